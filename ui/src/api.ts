// Typed wrappers over the app's commands and channels. The UI talks to Rust only here.
import { Channel, invoke } from "@tauri-apps/api/core";

export type Stage =
  | "queued"
  | "downloading"
  | "loading_model"
  | "decoding"
  | "separating"
  | "writing"
  | "done"
  | "failed"
  | "cancelled";

export type JobSource = { kind: "file"; path: string } | { kind: "link"; url: string };

export type FileFormat = "wav" | "flac" | "mp3";
export type SampleFormat = "int16" | "int24" | "float32";

export interface JobSettings {
  model: string;
  device: Device;
  /// "fast": bf16 multiplies where the CPU has them; "exact": f32, as PyTorch.
  precision: Precision;
  overlap: number;
  shifts: number;
  /// The file format of stems and exported mixes.
  format: FileFormat;
  /// WAV takes all three; FLAC only the integer ones; MP3 ignores it.
  sample_format: SampleFormat;
  /// Constant MP3 bitrate: 128, 160, 192, 224, 256 or 320.
  mp3_kbps: number;
  /// null leaves levels alone, so the stems still add up to the mix; a number normalises
  /// each file's peak to that many dBFS.
  normalize_dbfs: number | null;
  /// "vocals" writes vocals and no_vocals instead of every stem the model gives.
  two_stems: string | null;
}

export interface Job {
  id: number;
  title: string;
  source: JobSource;
  settings: JobSettings;
  stage: Stage;
  error: string | null;
  stems: { name: string; path: string }[];
  output_dir: string | null;
  created_at: number;
  elapsed_secs: number;
  from_cache: boolean;
}

export interface JobUpdate {
  id: number;
  title: string;
  stage: Stage;
  progress: number;
  eta_secs: number | null;
  elapsed_secs: number;
  error: string | null;
  download: [number, number | null] | null;
  from_cache: boolean;
}

export interface Refused {
  name: string;
  reason: string;
}

export interface AddReport {
  added: Job[];
  refused: Refused[];
}

export interface PlayerState {
  job_id: number;
  position_secs: number;
  duration_secs: number;
  playing: boolean;
  levels: number[];
}

export interface StemOverview {
  name: string;
  path: string;
  peaks: [number, number][];
}

export interface PlayerView {
  job_id: number;
  title: string;
  stems: StemOverview[];
  output: { device: string | null; problem: string | null };
  state: PlayerState;
}

export type Device = "cpu" | "cuda" | "metal";
export type Precision = "fast" | "exact";

export interface AppSettings {
  job: JobSettings;
  output_dir: string | null;
  ytdlp_path: string | null;
}

export interface SettingsView {
  settings: AppSettings;
  default_output_dir: string;
  devices: Device[];
  /// Whether this CPU has the bf16 multiplies that make "fast" faster.
  fast_precision_available: boolean;
  ytdlp: { path: string | null; problem: string | null };
}

export type ModelStatus = {
  name: string;
  description: string;
  sources: string[];
  /// The download size, when known.
  bytes: number | null;
  /// The size of the files on disk, when there are any.
  disk_bytes: number | null;
  /// How long a song takes compared with a single model (4 for the htdemucs_ft bag).
  relative_time: number;
  /// The files present came from a checkpoint the user imported, not the official download.
  imported: boolean;
} & (
  | { state: "ready" }
  | { state: "missing" }
  | { state: "downloading"; fraction: number | null }
);

export const api = {
  listJobs: () => invoke<Job[]>("list_jobs"),
  startupNotices: () => invoke<string[]>("startup_notices"),
  watchJobs(onUpdate: (u: JobUpdate) => void): Promise<void> {
    const channel = new Channel<JobUpdate>();
    channel.onmessage = onUpdate;
    return invoke("watch_jobs", { onUpdate: channel });
  },
  addPaths: (paths: string[]) => invoke<AddReport>("add_paths", { paths }),
  pickFiles: () => invoke<AddReport>("pick_files"),
  addLinks: (text: string) => invoke<AddReport>("add_links", { text }),
  cancelJob: (id: number) => invoke<void>("cancel_job", { id }),
  retryJob: (id: number) => invoke<void>("retry_job", { id }),
  removeJob: (id: number) => invoke<void>("remove_job", { id }),

  openPlayer: (jobId: number) => invoke<PlayerView>("open_player", { jobId }),
  closePlayer: () => invoke<void>("close_player"),
  watchPlayer(onTick: (s: PlayerState) => void): Promise<void> {
    const channel = new Channel<PlayerState>();
    channel.onmessage = onTick;
    return invoke("watch_player", { onTick: channel });
  },
  play: () => invoke<void>("play"),
  pause: () => invoke<void>("pause"),
  seek: (secs: number) => invoke<void>("seek", { secs }),
  setGain: (stem: number, gain: number) => invoke<void>("set_gain", { stem, gain }),
  setMute: (stem: number, muted: boolean) => invoke<void>("set_mute", { stem, muted }),
  setSolo: (stem: number, soloed: boolean) => invoke<void>("set_solo", { stem, soloed }),
  setLoop: (start: number | null, end: number | null) => invoke<void>("set_loop", { start, end }),

  revealJob: (id: number) => invoke<void>("reveal_job", { id }),
  exportZip: (id: number) => invoke<string | null>("export_zip", { id }),
  /// Renders the open mixer as it sounds now into one file; null when the user cancelled.
  exportMix: () => invoke<string | null>("export_mix"),

  getSettings: () => invoke<SettingsView>("get_settings"),
  saveSettings: (settings: AppSettings) => invoke<SettingsView>("save_settings", { settings }),
  chooseOutputDir: () => invoke<string | null>("choose_output_dir"),
  chooseYtdlp: () => invoke<string | null>("choose_ytdlp"),
  listModels: () => invoke<ModelStatus[]>("list_models"),
  downloadModel(name: string, onProgress: (s: ModelStatus) => void): Promise<ModelStatus> {
    const channel = new Channel<ModelStatus>();
    channel.onmessage = onProgress;
    return invoke("download_model", { name, onProgress: channel });
  },
  /// Asks for a checkpoint file and imports it; null when the user cancelled.
  importModel: () => invoke<ModelStatus | null>("import_model"),
  removeModel: (name: string) => invoke<ModelStatus>("remove_model", { name }),
};

/// Errors from commands arrive as sentences; anything else is shown as text.
export function errorText(e: unknown): string {
  if (typeof e === "string") return e;
  if (e instanceof Error) return e.message;
  return JSON.stringify(e);
}
