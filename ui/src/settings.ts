// The settings dialog: what new jobs run with, where stems go, and which models are here.
import { api, errorText, type ModelStatus, type SettingsView } from "./api";
import { bytes, el } from "./format";

const DEVICE_NAMES: Record<string, string> = { cpu: "CPU", cuda: "NVIDIA GPU (CUDA)", metal: "Apple GPU (Metal)" };

export class SettingsDialog {
  private view: SettingsView | null = null;
  private outputDir: string | null = null;
  private ytdlpPath: string | null = null;
  private models: ModelStatus[] = [];

  constructor(
    private dialog: HTMLDialogElement,
    private onError: (message: string) => void,
  ) {
    this.$("settings-cancel").addEventListener("click", () => dialog.close());
    this.$("choose-output").addEventListener("click", async () => {
      try {
        const dir = await api.chooseOutputDir();
        if (dir) {
          this.outputDir = dir;
          (this.$("set-output") as HTMLInputElement).value = dir;
        }
      } catch (e) {
        this.onError(errorText(e));
      }
    });
    this.$("choose-ytdlp").addEventListener("click", async () => {
      try {
        const path = await api.chooseYtdlp();
        if (path) {
          this.ytdlpPath = path;
          this.renderYtdlp();
        }
      } catch (e) {
        this.onError(errorText(e));
      }
    });
    this.$("reset-ytdlp").addEventListener("click", () => {
      this.ytdlpPath = null;
      this.renderYtdlp();
    });
    this.$("settings-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
    this.$("set-model").addEventListener("change", () => this.renderModels());
  }

  private $(id: string): HTMLElement {
    return this.dialog.querySelector(`#${id}`) as HTMLElement;
  }

  async open() {
    try {
      [this.view, this.models] = await Promise.all([api.getSettings(), api.listModels()]);
    } catch (e) {
      this.onError(errorText(e));
      return;
    }
    const { settings, devices, default_output_dir } = this.view;
    this.outputDir = settings.output_dir;
    this.ytdlpPath = settings.ytdlp_path;
    this.renderYtdlp();
    const model = this.$("set-model") as HTMLSelectElement;
    model.replaceChildren(...this.models.map((m) => el("option", { value: m.name, text: `${m.name} — ${m.sources.length} stems` })));
    model.value = settings.job.model;
    const device = this.$("set-device") as HTMLSelectElement;
    device.replaceChildren(...devices.map((d) => el("option", { value: d, text: DEVICE_NAMES[d] ?? d })));
    device.value = settings.job.device;
    (this.$("set-output") as HTMLInputElement).value = settings.output_dir ?? default_output_dir;
    (this.$("set-format") as HTMLSelectElement).value = settings.job.sample_format;
    (this.$("set-overlap") as HTMLInputElement).value = String(settings.job.overlap);
    (this.$("set-shifts") as HTMLInputElement).value = String(settings.job.shifts);
    this.$("settings-error").textContent = "";
    this.renderModels();
    if (!this.dialog.open) this.dialog.showModal();
  }

  /// The chosen yt-dlp, or what was found on PATH, or that there is none.
  private renderYtdlp() {
    const input = this.$("set-ytdlp") as HTMLInputElement;
    const status = this.$("ytdlp-status");
    const saved = this.view?.settings.ytdlp_path ?? null;
    if (this.ytdlpPath) {
      input.value = this.ytdlpPath;
      status.textContent = this.ytdlpPath === saved && this.view?.ytdlp.problem ? `yt-dlp ${this.view.ytdlp.problem}.` : "";
    } else {
      input.value = "";
      input.placeholder = "yt-dlp on PATH";
      const found = this.view?.ytdlp.path;
      if (saved !== null) status.textContent = "Stemdeck will look for yt-dlp on PATH.";
      else if (found) status.textContent = `Found ${found}.`;
      else status.textContent = "yt-dlp is not installed; the built-in downloader is used alone.";
    }
  }

  private renderModels() {
    const list = this.$("models");
    list.replaceChildren(...this.models.map((m) => this.modelRow(m)));
  }

  private modelRow(m: ModelStatus): HTMLLIElement {
    const row = el("li", { class: `model model-${m.state}`, "data-model": m.name });
    const size = m.bytes ? ` · ${bytes(m.bytes)}` : "";
    row.append(el("span", { class: "model-name", text: m.name }), el("span", { class: "model-desc", text: `${m.description}${size}` }));
    const status = el("span", { class: "model-state" });
    if (m.state === "ready") {
      status.textContent = "ready";
    } else if (m.state === "downloading") {
      const pct = m.fraction == null ? null : Math.floor(m.fraction * 100);
      status.textContent = pct == null ? "downloading…" : `downloading ${pct}%`;
      const bar = el("div", { class: "bar" }, el("div", { class: "bar-fill" }));
      (bar.firstChild as HTMLElement).style.width = `${pct ?? 0}%`;
      row.append(bar);
    } else {
      status.textContent = "missing";
      const button = el("button", { type: "button", class: "download", text: "Download" });
      button.addEventListener("click", () => this.download(m.name));
      status.append(" · ", button);
    }
    row.append(status);
    return row;
  }

  private async download(name: string) {
    const update = (s: ModelStatus) => {
      this.models = this.models.map((m) => (m.name === s.name ? s : m));
      this.renderModels();
    };
    const current = this.models.find((m) => m.name === name);
    if (current) update({ ...current, state: "downloading", fraction: 0 });
    try {
      update(await api.downloadModel(name, update));
    } catch (e) {
      this.onError(errorText(e));
      this.models = await api.listModels();
      this.renderModels();
    }
  }

  private async save() {
    if (!this.view) return;
    const job = { ...this.view.settings.job };
    job.model = (this.$("set-model") as HTMLSelectElement).value;
    job.device = (this.$("set-device") as HTMLSelectElement).value as typeof job.device;
    job.sample_format = (this.$("set-format") as HTMLSelectElement).value as typeof job.sample_format;
    job.overlap = Number((this.$("set-overlap") as HTMLInputElement).value);
    job.shifts = Math.round(Number((this.$("set-shifts") as HTMLInputElement).value));
    try {
      this.view = await api.saveSettings({ job, output_dir: this.outputDir, ytdlp_path: this.ytdlpPath });
      this.dialog.close();
    } catch (e) {
      this.$("settings-error").textContent = errorText(e);
    }
  }
}
