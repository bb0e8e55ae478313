// A stand-in for the Rust side, injected before the UI loads: it implements Tauri's IPC
// internals (invoke, callbacks, channels, events) over an in-page fake backend, records
// every command, and lets the test push job updates and player ticks as Rust would.
// Its data is checked against the types generated from Rust (`npm run build` runs
// `tsc -p tests`), so a changed Rust type breaks the build here too.
// @ts-check
/** @typedef {import("../src/bindings").Job} Job */
/** @typedef {import("../src/bindings").JobSource} JobSource */
/** @typedef {import("../src/bindings").JobStage} JobStage */
/** @typedef {import("../src/bindings").ModelStatus} ModelStatus */
/** @typedef {import("../src/bindings").SettingsView} SettingsView */
/** @typedef {import("../src/bindings").AddReport} AddReport */
/** @typedef {import("../src/bindings").PlayerView} PlayerView */
/** @typedef {import("../src/bindings").JobUpdate} JobUpdate */
(() => {
  const callbacks = new Map();
  let nextCallback = 1;
  const listeners = new Map(); // event name -> callback ids
  const channels = {}; // command arg name -> { id, index }
  const calls = [];
  let nextJob = 1;
  /** @type {Job[]} */
  const jobs = [];

  /**
   * New jobs run with the settings saved at the time, as in Rust.
   * @param {string} title
   * @param {JobSource} source
   * @param {JobStage} stage
   * @returns {Job}
   */
  const job = (title, source, stage = "queued") => ({
    id: nextJob++,
    title,
    source,
    settings: { ...settings.settings.job },
    stage,
    error: null,
    stems: [],
    output_dir: null,
    created_at: 0,
    elapsed_secs: 0,
    from_cache: false,
  });

  /** @type {(seed: number) => [number, number][]} */
  const peaks = (seed) =>
    Array.from({ length: 400 }, (_, i) => {
      const v = Math.abs(Math.sin(i * 0.05 * seed)) * (0.3 + 0.6 * ((i * seed) % 7) / 7);
      return [-v, v];
    });

  /** @type {ModelStatus[]} */
  const models = [
    { name: "htdemucs", description: "Hybrid Transformer Demucs v4, 4 stems (the default)", sources: ["drums", "bass", "other", "vocals"], bytes: 84141911, disk_bytes: 84141911, relative_time: 1, imported: false, state: "ready" },
    { name: "htdemucs_6s", description: "Hybrid Transformer Demucs v4, 6 stems (adds guitar and piano)", sources: ["drums", "bass", "other", "vocals", "guitar", "piano"], bytes: null, disk_bytes: null, relative_time: 1, imported: false, state: "missing" },
    { name: "htdemucs_ft", description: "Hybrid Transformer Demucs v4, fine-tuned bag of 4 models", sources: ["drums", "bass", "other", "vocals"], bytes: null, disk_bytes: 336_000_000, relative_time: 4, imported: true, state: "ready" },
  ];
  const stemNames = (s) =>
    s.two_stems ? [s.two_stems, `no_${s.two_stems}`] : models.find((m) => m.name === s.model).sources;
  // What import_model answers next: a status, null (cancelled) or { error }.
  const importAnswers = [];
  let openJobId = null;
  /** @type {SettingsView} */
  const settings = {
    settings: {
      job: { model: "htdemucs", device: "cpu", precision: "fast", overlap: 0.25, shifts: 0, format: "wav", sample_format: "int16", mp3_kbps: 320, normalize_dbfs: null, two_stems: null },
      output_dir: null,
      ytdlp_path: null,
    },
    default_output_dir: "/home/musician/Music/Stemdeck",
    choices: {
      devices: ["cpu"],
      formats: [
        { format: "wav", sample_formats: ["int16", "int24", "float32"] },
        { format: "flac", sample_formats: ["int16", "int24"] },
        { format: "mp3", sample_formats: [] },
      ],
      mp3_bitrates_kbps: [128, 160, 192, 224, 256, 320],
      peak_dbfs_min: -24,
      peak_dbfs_max: 0,
      default_peak_dbfs: -1,
      max_shifts: 20,
    },
    fast_precision_available: true,
    ytdlp: { path: "/usr/bin/yt-dlp", problem: null },
  };

  function send(name, message) {
    const channel = channels[name];
    if (!channel) throw new Error(`no channel ${name}`);
    callbacks.get(channel.id)({ message, index: channel.index++ });
  }

  const handlers = {
    list_jobs: () => jobs,
    startup_notices: () => [],
    watch_jobs: (a) => void (channels.jobs = { id: a.onUpdate.id, index: 0 }),
    watch_player: (a) => void (channels.player = { id: a.onTick.id, index: 0 }),
    add_paths: ({ paths }) => {
      const added = [];
      const refused = [];
      for (const p of paths) {
        if (p.endsWith(".txt")) refused.push({ name: p.split("/").pop(), reason: ".txt files are not audio Stemdeck reads (it reads WAV, FLAC, MP3, Ogg, M4A/AAC, AIFF)" });
        else if (p.endsWith("/Album")) added.push(job("01 Intro", { kind: "file", path: `${p}/01 Intro.flac` }), job("02 Song", { kind: "file", path: `${p}/02 Song.flac` }));
        else added.push(job(p.split("/").pop().replace(/\.[^.]+$/, ""), { kind: "file", path: p }));
      }
      jobs.push(...added);
      return { added, refused };
    },
    add_links: ({ text }) => {
      const tokens = text.split(/\s+/).filter(Boolean);
      const refused = tokens
        .filter((t) => t.includes("vimeo.com"))
        .map((name) => ({ name, reason: "links to vimeo.com are not supported; paste a YouTube video link" }));
      const added = tokens.filter((t) => !t.includes("vimeo.com")).map((url) => job(url, { kind: "link", video: url.slice(-11), url }));
      jobs.push(...added);
      return { added, refused };
    },
    cancel_job: () => null,
    retry_job: () => null,
    remove_job: ({ id }) => void jobs.splice(jobs.findIndex((j) => j.id === id), 1),
    /** @returns {PlayerView} */
    open_player: ({ jobId }) => {
      const j = jobs.find((x) => x.id === jobId);
      openJobId = jobId;
      return {
        job_id: jobId,
        title: j.title,
        stems: j.stems.map((stem, i) => ({ ...stem, peaks: peaks(i + 1) })),
        output: { device: null, problem: "no audio output device was found, so playback is silent; the mixer, export and your library still work" },
        state: { job_id: jobId, position_secs: 0, duration_secs: 213.4, playing: false, levels: j.stems.map(() => 1) },
      };
    },
    play: () => null,
    pause: () => null,
    seek: () => null,
    set_gain: () => null,
    set_mute: () => null,
    set_solo: () => null,
    set_loop: () => null,
    reveal_job: () => null,
    export_zip: () => "/home/musician/Music/Stemdeck/song stems.zip",
    export_mix: () => {
      const j = jobs.find((x) => x.id === openJobId);
      return `${j.output_dir}/${j.title} (mix).${j.settings.format}`;
    },
    get_settings: () => settings,
    save_settings: ({ settings: s }) => {
      if (s.job.overlap >= 1) throw "Overlap must be at least 0 and below 1, got " + s.job.overlap;
      if (s.job.format === "flac" && s.job.sample_format === "float32") throw "FLAC stores 16- or 24-bit samples; choose 16-bit or 24-bit";
      settings.settings = s;
      return settings;
    },
    choose_output_dir: () => "/media/usb/Stems",
    choose_ytdlp: () => "/opt/yt-dlp/yt-dlp",
    list_models: () => models,
    download_model: async ({ name, onProgress }) => {
      const id = onProgress.id;
      let index = 0;
      const m = models.find((x) => x.name === name);
      for (const fraction of [0.1, 0.43]) {
        callbacks.get(id)({ message: { ...m, state: "downloading", fraction }, index: index++ });
        await new Promise((r) => setTimeout(r, 150));
      }
      window.__mock.downloadAt43 = true;
      await new Promise((r) => (window.__mock.finishDownload = r));
      m.state = "ready";
      m.disk_bytes = 55_000_000;
      return m;
    },
    import_model: () => {
      const answer = importAnswers.shift() ?? null;
      if (answer?.error) throw answer.error;
      if (!answer) return null;
      return Object.assign(models.find((m) => m.name === answer.name), answer);
    },
    remove_model: ({ name }) => {
      const m = models.find((x) => x.name === name);
      Object.assign(m, { state: "missing", disk_bytes: null, imported: false });
      return m;
    },
    "plugin:event|listen": ({ event, handler }) => {
      if (!listeners.has(event)) listeners.set(event, []);
      listeners.get(event).push(handler);
      return handler;
    },
    "plugin:event|unlisten": () => null,
  };

  window.__TAURI_INTERNALS__ = {
    metadata: { currentWindow: { label: "main" }, currentWebview: { windowLabel: "main", label: "main" } },
    transformCallback(cb) {
      const id = nextCallback++;
      callbacks.set(id, cb);
      return id;
    },
    unregisterCallback(id) {
      callbacks.delete(id);
    },
    convertFileSrc: (p) => p,
    async invoke(cmd, args = {}) {
      calls.push({ cmd, args: JSON.parse(JSON.stringify(args ?? {})) });
      const handler = handlers[cmd];
      if (!handler) throw `unknown command ${cmd}`;
      return handler(args);
    },
  };
  window.__TAURI_EVENT_PLUGIN_INTERNALS__ = { unregisterListener() {} };

  window.__mock = {
    calls,
    jobs,
    importAnswers,
    callsTo: (cmd) => calls.filter((c) => c.cmd === cmd),
    drop(paths) {
      for (const id of listeners.get("tauri://drag-drop") ?? []) {
        callbacks.get(id)({ event: "tauri://drag-drop", id, payload: { paths, position: { x: 50, y: 50 } } });
      }
    },
    jobUpdate(update) {
      const j = jobs.find((x) => x.id === update.id);
      if (j) {
        j.stage = update.stage;
        j.error = update.error ?? null;
        if (update.title) j.title = update.title;
        j.from_cache = update.from_cache ?? false;
        if (update.stage === "done") {
          j.output_dir = `/stems/${j.title}`;
          j.stems = stemNames(j.settings).map((name) => ({ name, path: `${j.output_dir}/${name}.${j.settings.format}` }));
          j.elapsed_secs = update.elapsed_secs;
        }
      }
      send("jobs", { eta_secs: null, error: null, download: null, from_cache: false, title: j?.title ?? "", ...update });
    },
    playerTick(state) {
      send("player", state);
    },
  };
})();
