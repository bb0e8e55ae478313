// The results view: one row per stem (waveform, meter, volume, pan, mute, solo, drag-out)
// over one shared transport, with presets and waveform zoom. Nothing audible happens
// here: this view sends commands and draws the state the player reports back about 30
// times a second (the app's Rust renderer, or in a browser the Web Audio player). A job
// still separating plays up to its separated edge, which moves.
import {
  api,
  errorText,
  PRACTICE_IN_APP,
  type Analysis,
  type MixPreset,
  type MixSettings,
  type PlayerState,
  type PlayerView,
  type Practice,
} from "./api";
import { clock, el, stemLabel } from "./format";

const STEM_COLOURS: Record<string, string> = {
  drums: "#f2a33a",
  bass: "#e0556b",
  other: "#5aa9e6",
  vocals: "#7bd389",
  guitar: "#c38bf0",
  piano: "#f0d55a",
  // Everything but the vocals, so it takes the colour of "other".
  no_vocals: "#5aa9e6",
};
const FALLBACK_COLOURS = ["#f2a33a", "#e0556b", "#5aa9e6", "#7bd389", "#c38bf0", "#f0d55a"];

export class MixerView {
  private view: PlayerView | null = null;
  private state: PlayerState | null = null;
  private muted: boolean[] = [];
  private soloed: boolean[] = [];
  private loopRegion: [number, number] | null = null;
  private looping = false;
  /// Waveform zoom: 1 shows the whole song; the view starts at `viewStart` seconds.
  private zoom = 1;
  private viewStart = 0;
  private overviewVersion = -1;
  private overviewPending = false;
  private wasSeparating = false;
  private presets: MixPreset[] = [];
  private practice: Practice = neutralPractice();
  private analysisAsked = false;

  constructor(
    private root: HTMLElement,
    private emptyState: HTMLElement,
    private onError: (message: string) => void,
    private onEnded: (message: string) => void = onError,
  ) {
    this.$("play").addEventListener("click", () => this.togglePlay());
    this.$("loop").addEventListener("click", () => this.toggleLoop());
    this.$("zoom-in").addEventListener("click", () => this.zoomBy(2));
    this.$("zoom-out").addEventListener("click", () => this.zoomBy(0.5));
    this.$("zoom-fit").addEventListener("click", () => this.zoomFit());
    this.$("stems").addEventListener("wheel", (e) => this.onWheel(e as WheelEvent), { passive: false });
    this.$("presets").addEventListener("change", () => this.choosePreset());
    this.$("save-preset").addEventListener("click", () => this.showPresetForm(true));
    this.$("preset-cancel").addEventListener("click", () => this.showPresetForm(false));
    this.$("preset-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.savePreset();
    });
    this.$("delete-preset").addEventListener("click", () => this.deletePreset());
    this.$("drag-mix").addEventListener("mousedown", (e) => this.dragOut(e as MouseEvent, "mix"));
    this.setupPractice();
    this.setupTimeline();
    window.addEventListener("resize", () => this.drawWaveforms());
  }

  get jobId(): number | null {
    return this.view?.job_id ?? null;
  }

  private $(id: string): HTMLElement {
    return this.root.querySelector(`#${id}`) as HTMLElement;
  }

  show(view: PlayerView) {
    this.view = view;
    this.state = view.state;
    const mixOf = (name: string) => view.mix.stems.find((s) => s.name === name);
    this.muted = view.stems.map((s) => mixOf(s.name)?.muted ?? false);
    this.soloed = view.stems.map((s) => mixOf(s.name)?.soloed ?? false);
    this.loopRegion = view.mix.loop_secs ?? null;
    this.looping = view.mix.loop_secs != null;
    this.zoom = 1;
    this.viewStart = 0;
    this.overviewVersion = view.state.overview_version;
    this.wasSeparating = view.state.separating;
    this.emptyState.hidden = true;
    this.root.hidden = false;
    this.root.dataset.jobId = String(view.job_id);
    this.$("mixer-title").textContent = view.title;
    const status = this.$("output-status");
    const details = this.$("output-details") as HTMLDetailsElement;
    if (view.output.problem) {
      status.textContent = view.output.problem;
      status.className = "output-status warning";
      details.hidden = !view.output.details;
      details.open = false;
      this.$("output-details-text").textContent = view.output.details ?? "";
    } else {
      status.textContent = `Playing through ${view.output.device ?? "the default output"}`;
      status.className = "output-status";
      details.hidden = true;
    }
    const list = this.$("stems");
    list.replaceChildren(...view.stems.map((stem, i) => this.stemRow(stem.name, i)));
    this.showMix(view.mix);
    this.practice = view.mix.practice ?? neutralPractice();
    this.showPractice();
    this.analysisAsked = view.analysis != null;
    this.showAnalysis(view.analysis ?? null);
    this.updateLoopUi();
    this.updateZoomUi();
    this.loadPresets();
    this.drawWaveforms();
    this.tick(view.state);
  }

  hide() {
    this.view = null;
    this.state = null;
    this.root.hidden = true;
    this.emptyState.hidden = false;
  }

  private stemRow(name: string, index: number): HTMLLIElement {
    const colour = STEM_COLOURS[name] ?? FALLBACK_COLOURS[index % FALLBACK_COLOURS.length];
    const label = stemLabel(name);
    const volume = el("input", {
      type: "range",
      min: "0",
      max: "1.5",
      step: "0.01",
      value: "1",
      class: "volume",
      "aria-label": `${label} volume`,
    }) as HTMLInputElement;
    volume.addEventListener("input", () => this.run(api.setGain(index, Number(volume.value))));
    volume.addEventListener("dblclick", () => {
      volume.value = "1";
      this.run(api.setGain(index, 1));
    });
    const pan = el("input", {
      type: "range",
      min: "-1",
      max: "1",
      step: "0.05",
      value: "0",
      class: "pan",
      "aria-label": `${label} pan`,
      title: "Pan (double-click to centre)",
    }) as HTMLInputElement;
    pan.addEventListener("input", () => this.run(api.setPan(index, Number(pan.value))));
    pan.addEventListener("dblclick", () => {
      pan.value = "0";
      this.run(api.setPan(index, 0));
    });
    const meter = el("div", { class: "meter", role: "meter", "aria-label": `${label} level`, "aria-valuemin": "0", "aria-valuemax": "1" },
      el("div", { class: "rms" }), el("div", { class: "peak" }));
    const drag = el("button", { type: "button", class: "drag-handle drag-stem", "data-needs": "files", title: `Drag ${label} into a folder or a DAW`, "aria-label": `Drag ${label} out`, text: "⇱" });
    drag.addEventListener("mousedown", (e) => this.dragOut(e as MouseEvent, index));
    const mute = el("button", { type: "button", class: "mute", "aria-pressed": "false", title: `Mute (M ${index + 1})`, text: "M" });
    mute.addEventListener("click", () => this.toggleMute(index));
    const solo = el("button", { type: "button", class: "solo", "aria-pressed": "false", title: `Solo (S ${index + 1})`, text: "S" });
    solo.addEventListener("click", () => this.toggleSolo(index));
    const canvas = el("canvas", { class: "waveform", "aria-label": `${label} waveform` });
    canvas.style.setProperty("--stem-colour", colour);
    const wave = el("div", { class: "wave-box" }, canvas, el("div", { class: "unseparated" }), el("div", { class: "playhead" }),
      el("span", { class: "waiting", text: "separating…", hidden: "" }));
    wave.addEventListener("click", (e) => {
      const rect = wave.getBoundingClientRect();
      this.seekTo(this.viewStart + ((e.clientX - rect.left) / rect.width) * this.viewLength());
    });
    const row = el(
      "li",
      { class: "stem", "data-stem": name, "data-index": String(index), "data-level": "1" },
      el("span", { class: "stem-number", text: String(index + 1) }),
      el("span", { class: "stem-title" }, el("span", { class: "stem-name", text: label }), el("span", { class: "stem-lufs" })),
      wave,
      el("div", { class: "stem-controls" }, meter, volume, pan, mute, solo, drag),
    );
    row.style.setProperty("--stem-colour", colour);
    return row;
  }

  private drawWaveforms() {
    if (!this.view) return;
    const canvases = this.root.querySelectorAll<HTMLCanvasElement>("canvas.waveform");
    canvases.forEach((canvas, i) => {
      const peaks = this.view!.stems[i].peaks;
      const ratio = window.devicePixelRatio || 1;
      const width = Math.max(1, Math.floor(canvas.clientWidth * ratio));
      const height = Math.max(1, Math.floor(canvas.clientHeight * ratio));
      canvas.width = width;
      canvas.height = height;
      const ctx = canvas.getContext("2d");
      if (!ctx || peaks.length === 0) return;
      ctx.clearRect(0, 0, width, height);
      ctx.fillStyle = getComputedStyle(canvas).getPropertyValue("--stem-colour") || "#5aa9e6";
      const mid = height / 2;
      const d = this.duration() || 1;
      const first = (this.viewStart / d) * peaks.length;
      const span = (this.viewLength() / d) * peaks.length;
      for (let x = 0; x < width; x++) {
        const from = Math.floor(first + (x / width) * span);
        const to = Math.max(from + 1, Math.floor(first + ((x + 1) / width) * span));
        let lo = 0;
        let hi = 0;
        for (let p = from; p < to && p < peaks.length; p++) {
          lo = Math.min(lo, peaks[p][0]);
          hi = Math.max(hi, peaks[p][1]);
        }
        const top = mid - Math.min(1, hi) * mid;
        const bottom = mid - Math.max(-1, lo) * mid;
        ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
      }
      canvas.dataset.drawn = String(peaks.length);
    });
    this.drawEdge();
  }

  /// Shades what is not separated yet, on the timeline and on every waveform.
  private drawEdge() {
    const state = this.state;
    if (!state) return;
    const d = state.duration_secs || 1;
    const missing = Math.max(0, 1 - state.edge_secs / d);
    this.$("timeline-edge").style.width = `${(missing * 100).toFixed(3)}%`;
    const visibleFrom = Math.min(1, Math.max(0, (state.edge_secs - this.viewStart) / this.viewLength()));
    for (const shade of this.root.querySelectorAll<HTMLElement>(".unseparated")) {
      shade.style.width = `${((1 - visibleFrom) * 100).toFixed(3)}%`;
    }
  }

  tick(state: PlayerState) {
    if (!this.view || state.job_id !== this.view.job_id) return;
    this.state = state;
    if (state.ended) {
      const message = state.ended;
      this.run(api.closePlayer());
      this.hide();
      this.onEnded(message);
      return;
    }
    if (state.overview_version !== this.overviewVersion || state.separating !== this.wasSeparating) {
      this.refreshOverview(state);
    }
    this.followPlayhead(state);
    this.drawEdge();
    const separating = this.$("separating-status");
    separating.hidden = !state.separating;
    setText(separating, state.separating ? `Separating… ${clock(state.edge_secs)} of ${clock(state.duration_secs)} ready to play` : "");
    this.root.classList.toggle("separating", state.separating);
    this.root.classList.toggle("counting-in", state.counting_in);
    setAttr(this.root, "data-tempo", state.tempo.toFixed(2));
    setAttr(this.root, "data-semitones", state.semitones.toFixed(2));
    if (state.song_bpm != null && !this.analysisAsked) {
      // Heard while separating: the analysis comes with the finished stems.
      this.analysisAsked = true;
      this.run(api.playerAnalysis().then((a) => this.showAnalysis(a)));
    }
    this.drawMeters(state);
    const fraction = state.duration_secs > 0 ? state.position_secs / state.duration_secs : 0;
    const percent = `${(Math.min(1, fraction) * 100).toFixed(3)}%`;
    // Ticks come 30 times a second; touching only what changed keeps the play button's
    // text node in place, so a click that straddles a tick is still one click.
    setText(this.$("time"), `${clock(state.position_secs)} / ${clock(state.duration_secs)}`);
    this.$("timeline-fill").style.width = percent;
    this.$("timeline-head").style.left = percent;
    setAttr(this.$("timeline"), "aria-valuenow", state.position_secs.toFixed(2));
    const inView = (state.position_secs - this.viewStart) / this.viewLength();
    const headLeft = `${(Math.min(1, Math.max(0, inView)) * 100).toFixed(3)}%`;
    for (const head of this.root.querySelectorAll<HTMLElement>(".playhead")) head.style.left = headLeft;
    for (const label of this.root.querySelectorAll<HTMLElement>(".waiting")) {
      label.hidden = !state.waiting;
      label.style.left = headLeft;
    }
    const play = this.$("play");
    setText(play, state.playing ? "❚❚" : "▶");
    setAttr(play, "aria-label", state.playing ? "Pause" : "Play");
    setAttr(play, "data-playing", String(state.playing));
    this.root.querySelectorAll<HTMLElement>("li.stem").forEach((row, i) => {
      const level = state.levels[i] ?? 1;
      setAttr(row, "data-level", level.toFixed(2));
      row.classList.toggle("silent", level === 0);
    });
  }

  private duration(): number {
    return this.state?.duration_secs ?? 0;
  }

  togglePlay() {
    if (!this.view) return;
    this.run(this.state?.playing ? api.pause() : api.play());
  }

  toggleMute(index: number) {
    if (!this.view || index >= this.muted.length) return;
    this.muted[index] = !this.muted[index];
    this.pressed("mute", index, this.muted[index]);
    this.run(api.setMute(index, this.muted[index]));
  }

  toggleSolo(index: number) {
    if (!this.view || index >= this.soloed.length) return;
    this.soloed[index] = !this.soloed[index];
    this.pressed("solo", index, this.soloed[index]);
    this.run(api.setSolo(index, this.soloed[index]));
  }

  private pressed(kind: "mute" | "solo", index: number, on: boolean) {
    const button = this.root.querySelector(`li.stem[data-index="${index}"] button.${kind}`);
    button?.setAttribute("aria-pressed", String(on));
  }

  seekTo(secs: number) {
    const wanted = Math.max(0, Math.min(secs, this.duration()));
    this.run(
      api.seek(wanted).then((moved) => {
        if (moved + 0.05 < wanted) {
          this.onError(`Only the first ${clock(moved)} is separated so far, so playback goes from there.`);
        }
      }),
    );
  }

  private setupTimeline() {
    const timeline = this.$("timeline");
    let down: number | null = null;
    const secsAt = (clientX: number) => {
      const rect = timeline.getBoundingClientRect();
      return Math.max(0, Math.min(1, (clientX - rect.left) / rect.width)) * this.duration();
    };
    timeline.addEventListener("pointerdown", (e) => {
      down = e.clientX;
      timeline.setPointerCapture(e.pointerId);
    });
    timeline.addEventListener("pointermove", (e) => {
      if (down === null || Math.abs(e.clientX - down) < 5) return;
      const [a, b] = [secsAt(down), secsAt(e.clientX)].sort((x, y) => x - y);
      this.loopRegion = [a, b];
      this.drawLoopRegion();
    });
    timeline.addEventListener("pointerup", (e) => {
      if (down === null) return;
      const dragged = Math.abs(e.clientX - down) >= 5;
      const start = down;
      down = null;
      if (!dragged) {
        this.seekTo(secsAt(start));
        return;
      }
      if (this.loopRegion && this.loopRegion[1] - this.loopRegion[0] > 0.05) {
        this.looping = true;
        this.applyLoop();
      }
    });
    timeline.addEventListener("keydown", (e) => {
      const step = e.shiftKey ? 10 : 5;
      if (e.key === "ArrowRight") this.seekTo((this.state?.position_secs ?? 0) + step);
      if (e.key === "ArrowLeft") this.seekTo((this.state?.position_secs ?? 0) - step);
    });
  }

  toggleLoop() {
    if (!this.loopRegion) {
      this.onError("Drag across the timeline to choose the part to loop.");
      return;
    }
    this.looping = !this.looping;
    this.applyLoop();
  }

  private applyLoop() {
    const region = this.looping ? this.loopRegion : null;
    this.run(region ? api.setLoop(region[0], region[1]) : api.setLoop(null, null));
    if (region) this.seekTo(region[0]);
    this.updateLoopUi();
  }

  private updateLoopUi() {
    const button = this.$("loop");
    button.setAttribute("aria-pressed", String(this.looping));
    button.textContent = this.looping && this.loopRegion
      ? `Loop ${clock(this.loopRegion[0])}–${clock(this.loopRegion[1])}`
      : "Loop";
    this.drawLoopRegion();
  }

  private drawLoopRegion() {
    const region = this.$("loop-region");
    const d = this.duration();
    if (!this.loopRegion || d <= 0) {
      region.hidden = true;
      return;
    }
    region.hidden = false;
    region.classList.toggle("active", this.looping);
    region.style.left = `${(this.loopRegion[0] / d) * 100}%`;
    region.style.width = `${((this.loopRegion[1] - this.loopRegion[0]) / d) * 100}%`;
  }

  private run(p: Promise<unknown>) {
    p.catch((e) => this.onError(errorText(e)));
  }

  /// Shows a mix's settings on the controls (after opening, or applying a preset).
  private showMix(mix: MixSettings) {
    if (!this.view) return;
    this.view.mix = mix;
    this.view.stems.forEach((stem, i) => {
      const m = mix.stems.find((s) => s.name === stem.name);
      const row = this.root.querySelector<HTMLElement>(`li.stem[data-index="${i}"]`);
      if (!row) return;
      (row.querySelector("input.volume") as HTMLInputElement).value = String(m?.gain ?? 1);
      (row.querySelector("input.pan") as HTMLInputElement).value = String(m?.pan ?? 0);
      this.muted[i] = m?.muted ?? false;
      this.soloed[i] = m?.soloed ?? false;
      this.pressed("mute", i, this.muted[i]);
      this.pressed("solo", i, this.soloed[i]);
    });
  }

  private drawMeters(state: PlayerState) {
    this.root.querySelectorAll<HTMLElement>("li.stem").forEach((row, i) => {
      const m = state.meters[i];
      const meter = row.querySelector<HTMLElement>(".meter");
      if (!m || !meter) return;
      // A dB scale from -60 to 0 dBFS, as on a mixing desk.
      const height = (v: number) => `${(Math.max(0, Math.min(1, 1 + (20 * Math.log10(Math.max(v, 1e-6))) / 60)) * 100).toFixed(1)}%`;
      (meter.querySelector(".rms") as HTMLElement).style.height = height(m.rms);
      (meter.querySelector(".peak") as HTMLElement).style.bottom = height(m.peak);
      meter.classList.toggle("clip", m.peak >= 1);
      setAttr(meter, "aria-valuenow", m.peak.toFixed(3));
      setAttr(meter, "data-rms", m.rms.toFixed(3));
    });
  }

  /// Fetches the overviews again when they grew (chunks arrived, or the final files
  /// replaced the separated audio), at most one request at a time.
  private refreshOverview(state: PlayerState) {
    if (this.overviewPending || !this.view) return;
    this.overviewPending = true;
    const version = state.overview_version;
    const separating = state.separating;
    api
      .playerStems()
      .then((stems) => {
        if (!this.view || this.view.job_id !== state.job_id) return;
        this.view.stems = stems;
        this.overviewVersion = version;
        this.wasSeparating = separating;
        this.drawWaveforms();
      })
      .catch((e) => this.onError(errorText(e)))
      .finally(() => {
        this.overviewPending = false;
      });
  }

  private viewLength(): number {
    return (this.duration() || 1) / this.zoom;
  }

  private setView(zoom: number, start: number) {
    this.zoom = Math.max(1, Math.min(256, zoom));
    this.viewStart = Math.max(0, Math.min(start, this.duration() - this.viewLength()));
    this.updateZoomUi();
    this.drawWaveforms();
  }

  /// Zooms by `factor` around `atSecs` (the pointer), or the playhead.
  zoomBy(factor: number, atSecs?: number) {
    if (!this.view) return;
    const at = atSecs ?? this.state?.position_secs ?? 0;
    const fraction = (at - this.viewStart) / this.viewLength();
    const zoom = Math.max(1, Math.min(256, this.zoom * factor));
    const length = (this.duration() || 1) / zoom;
    this.setView(zoom, at - fraction * length);
  }

  zoomFit() {
    this.setView(1, 0);
  }

  private onWheel(e: WheelEvent) {
    if (!this.view) return;
    const box = (e.target as HTMLElement).closest(".wave-box");
    if (!box) return;
    e.preventDefault();
    const rect = box.getBoundingClientRect();
    const at = this.viewStart + ((e.clientX - rect.left) / rect.width) * this.viewLength();
    // Pinch arrives as a wheel with ctrlKey and small deltas; both zoom.
    const factor = Math.exp(-e.deltaY * (e.ctrlKey ? 0.01 : 0.002));
    this.zoomBy(factor, at);
  }

  /// Keeps the playhead in view while zoomed: the view pages on as it plays.
  private followPlayhead(state: PlayerState) {
    if (this.zoom <= 1 || !state.playing) return;
    const pos = state.position_secs;
    if (pos < this.viewStart || pos > this.viewStart + this.viewLength()) {
      this.setView(this.zoom, pos - this.viewLength() * 0.1);
    }
  }

  private updateZoomUi() {
    setText(this.$("zoom-level"), this.zoom <= 1 ? "Fit" : `${this.zoom >= 10 ? this.zoom.toFixed(0) : this.zoom.toFixed(1)}×`);
    this.root.dataset.zoom = this.zoom.toFixed(2);
  }

  private loadPresets() {
    api
      .mixPresets()
      .then((presets) => this.showPresets(presets))
      .catch((e) => this.onError(errorText(e)));
  }

  private showPresets(presets: MixPreset[]) {
    this.presets = presets;
    const select = this.$("presets") as HTMLSelectElement;
    const options = [el("option", { value: "", text: "Choose a preset…" })];
    for (const p of presets) options.push(el("option", { value: p.name, text: p.builtin ? p.name : `${p.name} (yours)` }));
    select.replaceChildren(...options);
    select.value = "";
    this.$("delete-preset").hidden = true;
  }

  private choosePreset() {
    const select = this.$("presets") as HTMLSelectElement;
    const name = select.value;
    const preset = this.presets.find((p) => p.name === name);
    this.$("delete-preset").hidden = !preset || preset.builtin;
    if (!name) return;
    this.run(api.applyPreset(name).then((mix) => this.showMix(mix)));
  }

  private showPresetForm(show: boolean) {
    this.$("preset-form").hidden = !show;
    this.$("save-preset").hidden = show;
    if (show) (this.$("preset-name") as HTMLInputElement).focus();
  }

  private savePreset() {
    const input = this.$("preset-name") as HTMLInputElement;
    const name = input.value.trim();
    if (!name) {
      this.onError("Give the preset a name first.");
      return;
    }
    this.run(
      api.savePreset(name).then((presets) => {
        this.showPresets(presets);
        input.value = "";
        this.showPresetForm(false);
      }),
    );
  }

  private deletePreset() {
    const name = (this.$("presets") as HTMLSelectElement).value;
    if (name) this.run(api.deletePreset(name).then((presets) => this.showPresets(presets)));
  }

  private setupPractice() {
    const tempo = this.$("tempo") as HTMLInputElement;
    const pitch = this.$("pitch") as HTMLInputElement;
    const cents = this.$("cents") as HTMLInputElement;
    tempo.addEventListener("input", () => this.setPractice({ tempo: Number(tempo.value) / 100 }));
    tempo.addEventListener("dblclick", () => this.setPractice({ tempo: 1 }));
    this.$("tempo-reset").addEventListener("click", () => this.setPractice({ tempo: 1 }));
    const pitchInput = () => {
      const fine = Math.max(-50, Math.min(50, Math.round(Number(cents.value) || 0)));
      this.setPractice({ semitones: Number(pitch.value) + fine / 100 });
    };
    pitch.addEventListener("input", pitchInput);
    cents.addEventListener("change", pitchInput);
    pitch.addEventListener("dblclick", () => this.setPractice({ semitones: 0 }));
    this.$("pitch-reset").addEventListener("click", () => this.setPractice({ semitones: 0 }));
    this.$("click").addEventListener("click", () => this.toggleClick());
    const volume = this.$("click-volume") as HTMLInputElement;
    volume.addEventListener("input", () => this.setPractice({ click_volume: Number(volume.value) }));
    this.$("count-in").addEventListener("click", () => this.setPractice({ count_in: !this.practice.count_in }));
    if (!api.host.practice) {
      const group = this.root.querySelector<HTMLElement>(".practice")!;
      group.classList.add("unavailable");
      for (const control of group.querySelectorAll<HTMLInputElement | HTMLButtonElement>("input, button")) control.disabled = true;
    }
  }

  /// Changes some of the practice settings, sends them all, and shows them.
  private setPractice(change: Partial<Practice>) {
    if (!this.view) return;
    if (!api.host.practice) {
      this.onError(PRACTICE_IN_APP);
      return;
    }
    const next = { ...this.practice, ...change };
    next.tempo = Math.min(1.5, Math.max(0.5, Math.round(next.tempo * 100) / 100));
    next.semitones = Math.min(12, Math.max(-12, Math.round(next.semitones * 100) / 100));
    this.practice = next;
    this.view.mix.practice = next;
    this.showPractice();
    this.run(api.setPractice(next));
  }

  toggleClick() {
    this.setPractice({ click: !this.practice.click });
  }

  /// `[` and `]`: 5 % slower or faster.
  nudgeTempo(step: number) {
    this.setPractice({ tempo: this.practice.tempo + step });
  }

  /// Shift+`[` and Shift+`]`: a semitone down or up, keeping any cents.
  nudgePitch(step: number) {
    this.setPractice({ semitones: this.practice.semitones + step });
  }

  private showPractice() {
    const p = this.practice;
    (this.$("tempo") as HTMLInputElement).value = String(Math.round(p.tempo * 100));
    setText(this.$("tempo-value"), `${Math.round(p.tempo * 100)} %`);
    const whole = Math.trunc(p.semitones);
    const cents = Math.round((p.semitones - whole) * 100);
    (this.$("pitch") as HTMLInputElement).value = String(whole);
    const centsInput = this.$("cents") as HTMLInputElement;
    if (document.activeElement !== centsInput) centsInput.value = String(cents);
    setText(this.$("pitch-value"), pitchText(p.semitones));
    setAttr(this.$("click"), "aria-pressed", String(p.click));
    setAttr(this.$("count-in"), "aria-pressed", String(p.count_in));
    (this.$("click-volume") as HTMLInputElement).value = String(p.click_volume);
    this.showPracticeNote();
  }

  private showPracticeNote() {
    if (!api.host.practice) {
      setText(this.$("practice-note"), PRACTICE_IN_APP);
      return;
    }
    const needsBeats = this.practice.click || this.practice.count_in;
    const known = this.view?.analysis?.tempo != null;
    const separating = this.state?.separating ?? false;
    const note =
      needsBeats && !known
        ? separating
          ? "The click starts once the song is separated and its tempo measured."
          : "No steady tempo was found in this song, so there is no click."
        : "";
    setText(this.$("practice-note"), note);
  }

  /// The mixer header's facts: tempo, key and loudness; each stem's loudness by its name.
  private showAnalysis(analysis: Analysis | null) {
    if (!this.view) return;
    this.view.analysis = analysis;
    const facts = this.$("song-facts");
    if (!analysis) {
      setText(facts, this.state?.separating ? "Tempo, key and loudness follow once it is separated." : "");
      this.showPracticeNote();
      return;
    }
    const parts: string[] = [];
    parts.push(analysis.tempo ? `${analysis.tempo.bpm.toFixed(1)} BPM` : "no steady tempo");
    parts.push(analysis.key ? analysis.key.name : "no clear key");
    const mix = analysis.mix_loudness;
    if (mix.integrated_lufs != null) parts.push(`${signed(mix.integrated_lufs)} LUFS`);
    if (mix.true_peak_dbtp != null) parts.push(`peak ${signed(mix.true_peak_dbtp)} dBTP`);
    setText(facts, parts.join(" · "));
    facts.title = "Tempo from the drums, key from the other stems, loudness by EBU R128";
    this.root.querySelectorAll<HTMLElement>("li.stem").forEach((row) => {
      const stem = analysis.stem_loudness.find((s) => s.stem === row.dataset.stem);
      const lufs = stem?.loudness.integrated_lufs;
      const tag = row.querySelector<HTMLElement>(".stem-lufs");
      if (tag) setText(tag, lufs != null ? `${signed(lufs)} LUFS` : "silent");
    });
    this.showPracticeNote();
  }

  /// Drags a stem's file, or the current mix rendered to a file, out of the window.
  private dragOut(e: MouseEvent, what: number | "mix") {
    if (e.button !== 0 || !this.view) return;
    e.preventDefault();
    const source = what === "mix" ? "mix" : { stem: what };
    this.run(api.prepareDrag(source).then((payload) => api.startDrag(payload)));
  }
}

function setText(element: HTMLElement, text: string) {
  if (element.textContent !== text) element.textContent = text;
}

function setAttr(element: HTMLElement, name: string, value: string) {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

function neutralPractice(): Practice {
  return { tempo: 1, semitones: 0, click: false, click_volume: 0.5, count_in: false };
}

/// "−2 st", "+0.35 st", "0 st".
function pitchText(semitones: number): string {
  if (Math.abs(semitones) < 0.005) return "0 st";
  const rounded = Math.round(semitones * 100) / 100;
  const text = Number.isInteger(rounded) ? String(Math.abs(rounded)) : Math.abs(rounded).toFixed(2);
  return `${rounded < 0 ? "−" : "+"}${text} st`;
}

/// A level in dB with a true minus sign: "−19.2".
function signed(db: number): string {
  return db < 0 ? `−${Math.abs(db).toFixed(1)}` : db.toFixed(1);
}
