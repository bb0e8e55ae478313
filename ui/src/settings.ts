// The settings dialog: what new jobs run with, where stems go and in which format, and
// which models are here (download, import, remove).
import { api, errorText, type FileFormat, type ModelStatus, type SampleFormat, type SettingsView } from "./api";
import { bytes, el, slowerNote, stemLabel } from "./format";

const DEVICE_NAMES: Record<string, string> = { cpu: "CPU", cuda: "NVIDIA GPU (CUDA)", metal: "Apple GPU (Metal)" };

const SAMPLE_FORMAT_NAMES: Record<SampleFormat, string> = { int16: "16-bit", int24: "24-bit", float32: "32-bit float" };

const FILE_FORMAT_HINTS: Record<FileFormat, string> = {
  wav: "Uncompressed: the largest files, exactly what the model wrote.",
  flac: "Lossless and about half the size of WAV.",
  mp3: "Lossy and the smallest; every file at a constant bitrate.",
};

export class SettingsDialog {
  private view: SettingsView | null = null;
  private outputDir: string | null = null;
  private ytdlpPath: string | null = null;
  private models: ModelStatus[] = [];
  /// Kept apart from the select so that passing through MP3 (no bit depth) forgets nothing.
  private sampleFormat: SampleFormat = "int16";
  /// The model whose row asks "Remove? Yes / No".
  private confirmingRemoval: string | null = null;
  private removing: string | null = null;

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
          this.input("set-output").value = dir;
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
    this.$("set-model").addEventListener("change", () => this.renderStemChoices());
    this.$("set-file-format").addEventListener("change", () => this.renderFileFormat());
    this.$("set-sample-format").addEventListener("change", () => {
      this.sampleFormat = this.select("set-sample-format").value as SampleFormat;
    });
    // Typing a level means normalising to it.
    const peak = this.input("set-peak-dbfs");
    for (const event of ["focus", "input"]) {
      peak.addEventListener(event, () => (this.input("levels-normalise").checked = true));
    }
    this.$("import-model").addEventListener("click", () => this.importModel());
  }

  private $(id: string): HTMLElement {
    return this.dialog.querySelector(`#${id}`) as HTMLElement;
  }

  private input(id: string): HTMLInputElement {
    return this.$(id) as HTMLInputElement;
  }

  private select(id: string): HTMLSelectElement {
    return this.$(id) as HTMLSelectElement;
  }

  async open() {
    try {
      [this.view, this.models] = await Promise.all([api.getSettings(), api.listModels()]);
    } catch (e) {
      this.onError(errorText(e));
      return;
    }
    const { settings, choices, default_output_dir } = this.view;
    const job = settings.job;
    this.outputDir = settings.output_dir;
    this.ytdlpPath = settings.ytdlp_path;
    this.confirmingRemoval = null;
    this.removing = null;
    this.renderYtdlp();
    this.renderModelChoices(job.model);
    this.renderStemChoices(job.two_stems);
    const device = this.select("set-device");
    device.replaceChildren(...choices.devices.map((d) => el("option", { value: d, text: DEVICE_NAMES[d] ?? d })));
    device.value = job.device;
    this.select("set-precision").value = job.precision;
    this.$("precision-hint").textContent = this.view.fast_precision_available
      ? "This CPU multiplies in bf16: Fast separates about 1.4× as quickly, with the same quality to the ear (within 0.02 dB SDR)."
      : "This CPU has no bf16 multiplies (AVX-512 BF16), so Fast runs the same exact arithmetic; both choices take the same time.";
    this.input("set-output").value = settings.output_dir ?? default_output_dir;
    this.select("set-file-format").value = job.format;
    this.sampleFormat = job.sample_format;
    this.renderFileFormat();
    const kbps = this.select("set-mp3-kbps");
    kbps.replaceChildren(...choices.mp3_bitrates_kbps.map((k) => el("option", { value: String(k), text: `${k} kbps` })));
    selectOrAdd(kbps, String(job.mp3_kbps), `${job.mp3_kbps} kbps`);
    const peak = this.input("set-peak-dbfs");
    peak.min = String(choices.peak_dbfs_min);
    peak.max = String(choices.peak_dbfs_max);
    this.input("set-shifts").max = String(choices.max_shifts);
    this.input(job.normalize_dbfs === null ? "levels-keep" : "levels-normalise").checked = true;
    peak.value = String(job.normalize_dbfs ?? choices.default_peak_dbfs);
    this.input("set-overlap").value = String(job.overlap);
    this.input("set-shifts").value = String(job.shifts);
    this.$("settings-error").textContent = "";
    this.say("");
    this.renderModels();
    if (!this.dialog.open) this.dialog.showModal();
  }

  /// The chosen yt-dlp, or what was found on PATH, or that there is none.
  private renderYtdlp() {
    const input = this.input("set-ytdlp");
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

  private renderModelChoices(chosen: string) {
    const select = this.select("set-model");
    select.replaceChildren(
      ...this.models.map((m) => {
        const slower = slowerNote(m.relative_time);
        return el("option", { value: m.name, text: `${m.name} — ${m.sources.length} stems${slower ? `, ${slower}` : ""}` });
      }),
    );
    select.value = chosen;
  }

  /// "All N stems" follows the chosen model; a two-stem split other than vocals (set
  /// outside this dialog) stays choosable so that saving does not drop it.
  private renderStemChoices(twoStems?: string | null) {
    const select = this.select("set-stems");
    const chosen = twoStems === undefined ? select.value : (twoStems ?? "");
    const model = this.models.find((m) => m.name === this.select("set-model").value);
    const all = model ? `All ${model.sources.length} stems` : "All stems";
    const options = [el("option", { value: "", text: all }), el("option", { value: "vocals", text: "Vocals / Instrumental" })];
    if (chosen !== "" && chosen !== "vocals") {
      options.push(el("option", { value: chosen, text: `${stemLabel(chosen)} / everything else` }));
    }
    select.replaceChildren(...options);
    select.value = chosen;
  }

  /// Shows the bit depths the chosen format can store, or the bitrate for MP3.
  private renderFileFormat() {
    const format = this.select("set-file-format").value as FileFormat;
    // The sample formats this file format can store (none for MP3, which hides the field).
    const allowed = this.view?.choices.formats.find((f) => f.format === format)?.sample_formats ?? [];
    // FLAC has no float: 24-bit keeps the most of a float choice.
    if (allowed.length > 0 && !allowed.includes(this.sampleFormat)) this.sampleFormat = "int24";
    const sampleSelect = this.select("set-sample-format");
    if (allowed.length > 0) {
      sampleSelect.replaceChildren(...allowed.map((f) => el("option", { value: f, text: SAMPLE_FORMAT_NAMES[f] })));
      sampleSelect.value = this.sampleFormat;
    }
    this.$("sample-format-field").hidden = allowed.length === 0;
    this.$("mp3-kbps-field").hidden = format !== "mp3";
    this.$("file-format-hint").textContent = FILE_FORMAT_HINTS[format];
  }

  private renderModels() {
    const list = this.$("models");
    list.replaceChildren(...this.models.map((m) => this.modelRow(m)));
  }

  private modelRow(m: ModelStatus): HTMLLIElement {
    const row = el("li", { class: `model model-${m.state}`, "data-model": m.name });
    const name = el("span", { class: "model-name", text: m.name });
    if (m.imported) {
      name.append(" ", el("span", { class: "badge imported", text: "imported", title: "From a checkpoint you imported, not the official download" }));
    }
    const facts = [`${m.sources.length} stems`, modelSize(m), slowerNote(m.relative_time)].filter((f) => f !== null);
    const about = el(
      "span",
      { class: "model-about" },
      el("span", { class: "model-desc", text: m.description }),
      el("span", { class: "model-facts", text: facts.join(" · ") }),
    );
    const side = el("span", { class: "model-side" });
    const state = el("span", { class: "model-state" });
    side.append(state);
    const button = (label: string, cls: string, action: () => void) => {
      const b = el("button", { type: "button", class: cls, text: label });
      b.addEventListener("click", action);
      side.append(b);
      return b;
    };
    row.append(name, about, side);

    if (this.removing === m.name) {
      state.textContent = "removing…";
    } else if (m.state === "ready" && this.confirmingRemoval === m.name) {
      state.textContent = "Remove?";
      state.classList.add("asking");
      button("Yes", "confirm-remove", () => this.removeModel(m.name));
      button("No", "cancel-remove", () => {
        this.confirmingRemoval = null;
        this.renderModels();
        this.rowButton(m.name, "remove")?.focus();
      });
    } else if (m.state === "ready") {
      state.textContent = "ready";
      button("Remove", "remove", () => {
        this.confirmingRemoval = m.name;
        this.say("");
        this.renderModels();
        // The clicked button is gone; the keyboard lands on the answer that keeps the model.
        this.rowButton(m.name, "cancel-remove")?.focus();
      });
    } else if (m.state === "downloading") {
      const pct = m.fraction == null ? null : Math.floor(m.fraction * 100);
      state.textContent = pct == null ? "downloading…" : `downloading ${pct}%`;
      const bar = el("div", { class: "bar" }, el("div", { class: "bar-fill" }));
      (bar.firstChild as HTMLElement).style.width = `${pct ?? 0}%`;
      row.append(bar);
    } else {
      state.textContent = "missing";
      button("Download", "download", () => this.download(m.name));
    }
    return row;
  }

  private rowButton(model: string, cls: string): HTMLButtonElement | null {
    return this.dialog.querySelector(`li.model[data-model="${model}"] button.${cls}`);
  }

  /// A model's status changed: its row, and the choices that name it, follow.
  private updateModel(status: ModelStatus) {
    const known = this.models.some((m) => m.name === status.name);
    this.models = known ? this.models.map((m) => (m.name === status.name ? status : m)) : [...this.models, status];
    this.renderModels();
    if (!known) {
      this.renderModelChoices(this.select("set-model").value);
      this.renderStemChoices();
    }
  }

  /// Model errors show in the dialog, next to the list: a toast would sit behind it.
  private say(message: string, isError = false) {
    const line = this.$("models-message");
    line.textContent = message;
    line.className = isError ? "error" : "hint";
  }

  private async download(name: string) {
    this.say("");
    const current = this.models.find((m) => m.name === name);
    if (current) this.updateModel({ ...current, state: "downloading", fraction: 0 });
    try {
      this.updateModel(await api.downloadModel(name, (s) => this.updateModel(s)));
    } catch (e) {
      this.say(errorText(e), true);
      this.models = await api.listModels();
      this.renderModels();
    }
  }

  private async removeModel(name: string) {
    this.confirmingRemoval = null;
    this.removing = name;
    this.renderModels();
    try {
      const status = await api.removeModel(name);
      this.removing = null;
      this.updateModel(status);
    } catch (e) {
      this.removing = null;
      this.renderModels();
      this.say(`Could not remove ${name}: ${errorText(e)}`, true);
    }
  }

  private async importModel() {
    const button = this.$("import-model") as HTMLButtonElement;
    button.disabled = true;
    button.textContent = "Importing…";
    this.say("");
    try {
      const status = await api.importModel();
      if (status) {
        this.updateModel(status);
        this.say(`Imported the checkpoint as ${status.name}.`);
      }
    } catch (e) {
      this.say(`Could not import the checkpoint: ${errorText(e)}`, true);
    } finally {
      button.disabled = false;
      button.textContent = "Import checkpoint…";
    }
  }

  private async save() {
    if (!this.view) return;
    const error = this.$("settings-error");
    let normalize_dbfs: number | null = null;
    if (this.input("levels-normalise").checked) {
      const peak = this.input("set-peak-dbfs").valueAsNumber;
      const { peak_dbfs_min: min, peak_dbfs_max: max } = this.view.choices;
      if (!(peak >= min && peak <= max)) {
        error.textContent = `Choose a peak level between ${min} and ${max} dBFS, or leave levels as they are.`;
        return;
      }
      normalize_dbfs = peak;
    }
    const job = { ...this.view.settings.job };
    job.model = this.select("set-model").value;
    job.device = this.select("set-device").value as typeof job.device;
    job.precision = this.select("set-precision").value as typeof job.precision;
    job.format = this.select("set-file-format").value as FileFormat;
    job.sample_format = this.sampleFormat;
    job.mp3_kbps = Number(this.select("set-mp3-kbps").value);
    job.normalize_dbfs = normalize_dbfs;
    job.two_stems = this.select("set-stems").value || null;
    job.overlap = Number(this.input("set-overlap").value);
    job.shifts = Math.round(Number(this.input("set-shifts").value));
    try {
      // Presets are saved from the mixer; the server keeps its own copy of them.
      this.view = await api.saveSettings({ job, output_dir: this.outputDir, ytdlp_path: this.ytdlpPath, mix_presets: this.view?.settings.mix_presets ?? [] });
      this.dialog.close();
    } catch (e) {
      error.textContent = errorText(e);
    }
  }
}

/// The download size when known; otherwise what the files take on disk.
function modelSize(m: ModelStatus): string {
  if (m.bytes) return bytes(m.bytes);
  if (m.disk_bytes != null) return bytes(m.disk_bytes);
  return "size unknown until downloaded";
}

/// Selects a value, adding it first if the list lacks it (a setting saved by a newer version).
function selectOrAdd(select: HTMLSelectElement, value: string, label: string) {
  if (![...select.options].some((o) => o.value === value)) select.append(el("option", { value, text: label }));
  select.value = value;
}
