// The results view: one row per stem (waveform, volume, mute, solo) over one shared
// transport. Everything audible happens in Rust; this view sends commands and draws the
// state the mixer reports back about 30 times a second.
import { api, errorText, type PlayerState, type PlayerView } from "./api";
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

  constructor(
    private root: HTMLElement,
    private emptyState: HTMLElement,
    private onError: (message: string) => void,
  ) {
    this.$("play").addEventListener("click", () => this.togglePlay());
    this.$("loop").addEventListener("click", () => this.toggleLoop());
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
    this.muted = view.stems.map(() => false);
    this.soloed = view.stems.map(() => false);
    this.loopRegion = null;
    this.looping = false;
    this.emptyState.hidden = true;
    this.root.hidden = false;
    this.root.dataset.jobId = String(view.job_id);
    this.$("mixer-title").textContent = view.title;
    const status = this.$("output-status");
    if (view.output.problem) {
      status.textContent = view.output.problem.replace(/^./, (c) => c.toUpperCase());
      status.className = "output-status warning";
    } else {
      status.textContent = `Playing through ${view.output.device ?? "the default output"}`;
      status.className = "output-status";
    }
    const list = this.$("stems");
    list.replaceChildren(...view.stems.map((stem, i) => this.stemRow(stem.name, i)));
    this.updateLoopUi();
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
    const mute = el("button", { type: "button", class: "mute", "aria-pressed": "false", title: `Mute (M ${index + 1})`, text: "M" });
    mute.addEventListener("click", () => this.toggleMute(index));
    const solo = el("button", { type: "button", class: "solo", "aria-pressed": "false", title: `Solo (S ${index + 1})`, text: "S" });
    solo.addEventListener("click", () => this.toggleSolo(index));
    const canvas = el("canvas", { class: "waveform", "aria-label": `${label} waveform` });
    canvas.style.setProperty("--stem-colour", colour);
    const wave = el("div", { class: "wave-box" }, canvas, el("div", { class: "playhead" }));
    wave.addEventListener("click", (e) => {
      const rect = wave.getBoundingClientRect();
      this.seekTo(((e.clientX - rect.left) / rect.width) * this.duration());
    });
    const row = el(
      "li",
      { class: "stem", "data-stem": name, "data-index": String(index), "data-level": "1" },
      el("span", { class: "stem-number", text: String(index + 1) }),
      el("span", { class: "stem-name", text: label }),
      wave,
      el("div", { class: "stem-controls" }, volume, mute, solo),
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
      for (let x = 0; x < width; x++) {
        const from = Math.floor((x / width) * peaks.length);
        const to = Math.max(from + 1, Math.floor(((x + 1) / width) * peaks.length));
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
  }

  tick(state: PlayerState) {
    if (!this.view || state.job_id !== this.view.job_id) return;
    this.state = state;
    const fraction = state.duration_secs > 0 ? state.position_secs / state.duration_secs : 0;
    const percent = `${(Math.min(1, fraction) * 100).toFixed(3)}%`;
    // Ticks come 30 times a second; touching only what changed keeps the play button's
    // text node in place, so a click that straddles a tick is still one click.
    setText(this.$("time"), `${clock(state.position_secs)} / ${clock(state.duration_secs)}`);
    this.$("timeline-fill").style.width = percent;
    this.$("timeline-head").style.left = percent;
    setAttr(this.$("timeline"), "aria-valuenow", state.position_secs.toFixed(2));
    for (const head of this.root.querySelectorAll<HTMLElement>(".playhead")) head.style.left = percent;
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
    this.run(api.seek(Math.max(0, Math.min(secs, this.duration()))));
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

  private toggleLoop() {
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
}

function setText(element: HTMLElement, text: string) {
  if (element.textContent !== text) element.textContent = text;
}

function setAttr(element: HTMLElement, name: string, value: string) {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}
