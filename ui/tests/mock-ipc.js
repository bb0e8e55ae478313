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
/** @typedef {import("../src/bindings").PlayerState} PlayerState */
/** @typedef {import("../src/bindings").MixSettings} MixSettings */
/** @typedef {import("../src/bindings").MixPreset} MixPreset */
/** @typedef {import("../src/bindings").Analysis} Analysis */
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
    can_retry: true,
    stems: [],
    output_dir: null,
    created_at: 0,
    elapsed_secs: 0,
    from_cache: false,
    mix: null,
    analysis: null,
    timings: null,
  });

  /**
   * What the engine measures once a song is separated.
   * @param {string[]} names
   * @returns {Analysis}
   */
  const analysisOf = (names) => ({
    tempo: { bpm: 123.6, beats: Array.from({ length: 400 }, (_, i) => 0.5 + i * (60 / 123.6)), from: "drums" },
    key: { tonic: 0, mode: "minor", name: "C minor", confidence: 0.79 },
    mix_loudness: { integrated_lufs: -9.4, true_peak_dbtp: -0.6 },
    stem_loudness: names.map((stem, i) => ({ stem, loudness: { integrated_lufs: -14.2 - i * 2.5, true_peak_dbtp: -3.1 - i } })),
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
  /** @type {MixSettings} */
  let mix = { stems: [], loop_secs: null, practice: null };
  /** @type {MixPreset[]} */
  const userPresets = [];
  // What the mixer's seek answers: the separated edge, while a job separates.
  let edgeSecs = 213.4;
  /** @type {(names: string[]) => MixPreset[]} */
  const builtinPresets = (names) => [
    ...(names.includes("vocals") ? [{ name: "Karaoke", stems: [{ name: "vocals", gain: 1, muted: true, soloed: false, pan: 0 }], builtin: true }] : []),
    ...(names.includes("drums") ? [{ name: "No drums", stems: [{ name: "drums", gain: 1, muted: true, soloed: false, pan: 0 }], builtin: true }] : []),
    ...(names.includes("vocals") ? [{ name: "Only vocals", stems: [{ name: "vocals", gain: 1, muted: false, soloed: true, pan: 0 }], builtin: true }] : []),
  ];
  const openNames = () => mix.stems.map((s) => s.name);
  /** @type {(state: Partial<PlayerState>) => PlayerState} */
  const tick = (state) => ({
    job_id: openJobId ?? 0,
    position_secs: 0,
    duration_secs: 213.4,
    edge_secs: 213.4,
    separating: false,
    playing: false,
    waiting: false,
    levels: mix.stems.map(() => 1),
    meters: mix.stems.map(() => ({ peak: 0, rms: 0 })),
    master: { peak: 0, rms: 0 },
    overview_version: 1,
    ended: null,
    tempo: mix.practice?.tempo ?? 1,
    semitones: mix.practice?.semitones ?? 0,
    counting_in: false,
    song_bpm: null,
    ...state,
  });
  /** @type {SettingsView} */
  const settings = {
    settings: {
      job: { model: "htdemucs", device: "cpu", precision: "fast", overlap: 0.25, shifts: 0, format: "wav", sample_format: "int16", mp3_kbps: 320, normalize_dbfs: null, two_stems: null },
      output_dir: null,
      ytdlp_path: null,
      mix_presets: [],
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
        // The engine probes each file's content: a text file is refused whatever its name.
        if (p.endsWith(".txt") || p.endsWith("notes.mp3")) refused.push({ name: p.split("/").pop(), reason: "not an audio file Stemdeck can read (WAV, AIFF, CAF, FLAC, MP3, Ogg Vorbis or Opus, AAC/ALAC in M4A, WebM/MKV, MP4/MOV video)" });
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
      const running = j.stage !== "done";
      if (running && !window.__mock.listenable.has(jobId)) throw `“${j.title}” has nothing to listen to yet`;
      openJobId = jobId;
      const names = running ? stemNames(j.settings) : j.stems.map((s) => s.name);
      mix = j.mix ?? {
        stems: names.map((name) => ({ name, gain: 1, muted: false, soloed: false, pan: 0 })),
        loop_secs: null,
        practice: { tempo: 1, semitones: 0, click: false, click_volume: 0.5, count_in: false },
      };
      const analysis = running ? null : (j.analysis ?? analysisOf(names));
      edgeSecs = running ? 12 : 213.4;
      return {
        job_id: jobId,
        title: j.title,
        stems: names.map((name, i) => ({ name, path: running ? null : j.stems[i].path, peaks: peaks(i + 1).map((p, k) => (running && k > 22 ? [0, 0] : p)) })),
        output: { device: null, problem: "No sound output found: playback is silent", details: "ALSA lib confmisc.c:855:(parse_card) cannot find card '0'" },
        state: tick({ job_id: jobId, edge_secs: edgeSecs, separating: running, overview_version: running ? 3 : 1, song_bpm: analysis?.tempo?.bpm ?? null }),
        mix,
        analysis,
      };
    },
    close_player: () => {
      const j = jobs.find((x) => x.id === openJobId);
      if (j) j.mix = mix;
      openJobId = null;
    },
    player_stems: () => openNames().map((name, i) => ({ name, path: null, peaks: peaks(i + 1) })),
    play: () => null,
    pause: () => null,
    seek: ({ secs }) => Math.min(secs, edgeSecs),
    set_pan: () => null,
    set_practice: ({ practice }) => void (mix = { ...mix, practice }),
    player_analysis: () => analysisOf(openNames()),
    mix_presets: () => [...builtinPresets(openNames()), ...userPresets],
    apply_preset: ({ name }) => {
      const preset = [...builtinPresets(openNames()), ...userPresets].find((p) => p.name === name);
      if (!preset) throw `there is no preset “${name}”`;
      mix = { ...mix, stems: mix.stems.map((s) => preset.stems.find((p) => p.name === s.name) ?? { name: s.name, gain: 1, muted: false, soloed: false, pan: 0 }) };
      return mix;
    },
    save_preset: ({ name }) => {
      userPresets.push({ name, stems: mix.stems, builtin: false });
      return [...builtinPresets(openNames()), ...userPresets];
    },
    delete_preset: ({ name }) => {
      userPresets.splice(userPresets.findIndex((p) => p.name === name), 1);
      return [...builtinPresets(openNames()), ...userPresets];
    },
    prepare_drag: ({ source }) => ({
      path: source === "mix" ? "/home/musician/.local/share/stemdeck/playback/drag/Song (custom mix).wav" : `/stems/Song/${openNames()[source.stem]}.wav`,
      icon: "/home/musician/.local/share/stemdeck/playback/drag-icon.png",
    }),
    "plugin:drag|start_drag": () => null,
    set_gain: () => null,
    set_mute: () => null,
    set_solo: ({ stem, soloed }) => void (mix.stems[stem] && (mix.stems[stem].soloed = soloed)),
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
    /** Jobs whose first chunk is separated (the queue row offers "Listen now"). */
    listenable: new Set(),
    setEdge(secs) {
      edgeSecs = secs;
    },
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
        j.can_retry = update.can_retry ?? true;
        if (update.title) j.title = update.title;
        j.from_cache = update.from_cache ?? false;
        if (update.stage === "done") {
          j.output_dir = `/stems/${j.title}`;
          j.stems = stemNames(j.settings).map((name) => ({ name, path: `${j.output_dir}/${name}.${j.settings.format}` }));
          j.elapsed_secs = update.elapsed_secs;
        }
      }
      if (update.listenable) window.__mock.listenable.add(update.id);
      send("jobs", { eta_secs: null, error: null, can_retry: true, download: null, from_cache: false, listenable: false, title: j?.title ?? "", ...update });
    },
    playerTick(state) {
      send("player", tick(state));
    },
  };
})();
