// The desktop app's transport: each call is one Tauri command, each stream a channel.
import { Channel, invoke } from "@tauri-apps/api/core";

// Every type the commands and channels carry is generated from the Rust types
// (src-tauri/src/bindings.rs); only the command wrappers are written here.
import type {
  AddReport,
  Analysis,
  Practice,
  AppSettings,
  DragPayload,
  DragSource,
  Job,
  MixPreset,
  MixSettings,
  JobUpdate,
  ModelStatus,
  PlayerState,
  PlayerView,
  SettingsView,
  StemOverview,
} from "../bindings";

import type { Host } from "./host";

export const APP_HOST: Host = {
  kind: "app",
  practice: true,
  files: true,
  presets: true,
  listenWhileSeparating: true,
};

export const tauriApi = {
  host: APP_HOST,
  listJobs: () => invoke<Job[]>("list_jobs"),
  startupNotices: () => invoke<string[]>("startup_notices"),
  watchJobs(onUpdate: (u: JobUpdate) => void): Promise<void> {
    const channel = new Channel<JobUpdate>();
    channel.onmessage = onUpdate;
    return invoke("watch_jobs", { onUpdate: channel });
  },
  addPaths: (paths: string[]) => invoke<AddReport>("add_paths", { paths }),
  pickFiles: () => invoke<AddReport>("pick_files"),
  /// Drops reach the app as paths (`addPaths`); a browser's File objects never do.
  uploadFiles: (_files: File[]): Promise<AddReport> => Promise.reject("Drop the files onto the window."),
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
  /// Resolves to where playback moved: short of `secs` when that part is not separated yet.
  seek: (secs: number) => invoke<number>("seek", { secs }),
  setPan: (stem: number, pan: number) => invoke<void>("set_pan", { stem, pan }),
  /// Tempo, pitch, click and count-in, all at once.
  setPractice: (practice: Practice) => invoke<void>("set_practice", { practice }),
  /// The open song's tempo, key and loudness; null until it is analysed.
  playerAnalysis: () => invoke<Analysis | null>("player_analysis"),
  playerStems: () => invoke<StemOverview[]>("player_stems"),
  mixPresets: () => invoke<MixPreset[]>("mix_presets"),
  applyPreset: (name: string) => invoke<MixSettings>("apply_preset", { name }),
  savePreset: (name: string) => invoke<MixPreset[]>("save_preset", { name }),
  deletePreset: (name: string) => invoke<MixPreset[]>("delete_preset", { name }),
  /// A real file to drag out: the stem's own, or the current mix rendered first.
  prepareDrag: (source: DragSource) => invoke<DragPayload>("prepare_drag", { source }),
  /// Hands the file to the system's drag and drop (the drag-out plugin).
  startDrag: (payload: DragPayload) =>
    invoke<void>("plugin:drag|start_drag", { item: [payload.path], image: payload.icon, onEventFn: null }),
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

