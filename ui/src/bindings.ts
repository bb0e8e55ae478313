// Generated from the Rust types by src-tauri/src/bindings.rs; do not edit.
// UPDATE_BINDINGS=1 cargo test -p stemdeck-app --lib bindings rewrites it.

export type Job = { id: number, title: string, source: JobSource, settings: JobSettings, stage: JobStage, error: string | null, 
/**
 * Whether running the job again could help: false for a file that is not audio or
 * settings no model has, true for a lost connection, a full disk or an interruption.
 */
can_retry: boolean, stems: Array<StemFile>, output_dir: string | null, 
/**
 * Seconds since the Unix epoch.
 */
created_at: number, 
/**
 * Seconds the last run took (or has taken so far).
 */
elapsed_secs: number, 
/**
 * True when the stems were reused from an earlier identical job.
 */
from_cache: boolean, 
/**
 * The mixer as the user left it for this song.
 */
mix: MixSettings | null, 
/**
 * Tempo, beats, key and loudness, measured once the stems were written.
 */
analysis: Analysis | null, 
/**
 * Stem files of a finished job that are no longer where they were written (moved or
 * deleted since); found each time the library is listed.
 */
missing_stems?: Array<string>, 
/**
 * The custom mixes the job's settings asked for, written beside the stems.
 */
mixes?: Array<StemFile>, 
/**
 * How the last finished run went: how long the song is and how fast it separated.
 */
timings: JobTimings | null, 
/**
 * The run on the shared queue this job was handed over as (`stemdeck serve --queue`);
 * `None` for a job this machine runs itself, or one not handed over yet.
 */
remote_run?: number | null, };

export type JobTimings = { 
/**
 * The song's length; `None` when its stems were reused and nothing was separated.
 */
audio_secs: number | null, 
/**
 * Seconds of work per second of audio (below 1 is faster than real time).
 */
rtf: number | null, 
/**
 * The device and precision the model ran with ("cpu", "fast").
 */
device: string, precision: string, 
/**
 * The worker that separated it, for a job run on the shared queue; `None` when this
 * machine did.
 */
worker: string | null, 
/**
 * The SHA-256 of the model file it was separated with (of each file, joined by `+`,
 * for a bag); `None` when its stems were reused.
 */
model_sha256: string | null, };

export type JobSource = { "kind": "file", path: string, } | { "kind": "link", video: VideoId, url: string, };

export type JobStage = "queued" | "downloading" | "loading_model" | "decoding" | "separating" | "writing" | "analysing" | "done" | "failed" | "cancelled" | "interrupted";

export type JobUpdate = { id: number, 
/**
 * The job's title, which becomes the video's title once a link is fetched.
 */
title: string, stage: JobStage, 
/**
 * 0 to 1 over the whole job.
 */
progress: number, eta_secs: number | null, elapsed_secs: number, error: string | null, 
/**
 * Whether a Retry is offered: only where running the job again could help.
 */
can_retry: boolean, 
/**
 * For a download (the song's audio, or the model): bytes so far and the total.
 */
download: [number, number | null] | null, 
/**
 * True when the stems were reused from an earlier identical job.
 */
from_cache: boolean, 
/**
 * True once a running job has separated audio that can be listened to.
 */
listenable: boolean, };

export type JobSettings = { model: string, device: DeviceChoice, 
/**
 * Settings saved before the choice existed get the recommended one.
 */
precision: Precision, overlap: number, shifts: number, 
/**
 * WAV: any; FLAC: 16 or 24-bit; ignored by MP3.
 */
sample_format: SampleFormat, format: FileFormat, mp3_kbps: number, 
/**
 * Peak level each file is normalised to; `None` leaves levels as separated.
 */
normalize_dbfs: number | null, two_stems: string | null, 
/**
 * Mixes of some stems to write beside them ("drums+bass", "all-vocals").
 */
mixes?: Array<string>, };

export type AppSettings = { job: JobSettings, 
/**
 * Where stems are written; `None` means the default (`~/Music/Stemdeck`).
 */
output_dir: string | null, 
/**
 * The yt-dlp links fall back to; `None` looks for it on `PATH`.
 */
ytdlp_path: string | null, 
/**
 * Mixer presets the user saved.
 */
mix_presets: Array<MixPreset>, };

export type StemFile = { name: string, path: string, };

export type VideoId = string;

export type DeviceChoice = "cpu" | "cuda" | "metal";

export type Precision = "fast" | "exact";

export type FileFormat = "wav" | "flac" | "mp3";

export type SampleFormat = "int16" | "int24" | "float32";

export type SettingChoices = { 
/**
 * The devices this build runs on.
 */
devices: Array<DeviceChoice>, 
/**
 * Each file format and the sample formats it holds.
 */
formats: Array<FormatChoice>, mp3_bitrates_kbps: Array<number>, peak_dbfs_min: number, peak_dbfs_max: number, default_peak_dbfs: number, 
/**
 * Shifts above this are refused; overlap is always at least 0 and below 1.
 */
max_shifts: number, };

export type FormatChoice = { format: FileFormat, sample_formats: Array<SampleFormat>, };

export type Refused = { 
/**
 * The file or folder name (or the pasted text) as the user knows it.
 */
name: string, reason: string, };

export type AddReport = { added: Array<Job>, refused: Array<Refused>, };

export type SettingsView = { settings: AppSettings, 
/**
 * Where stems go when no folder is chosen.
 */
default_output_dir: string, 
/**
 * What the settings may be: devices of this build, formats, ranges.
 */
choices: SettingChoices, 
/**
 * Whether this CPU has the bf16 multiplies that make the fast precision faster.
 */
fast_precision_available: boolean, 
/**
 * The yt-dlp links fall back to, or why there is none.
 */
ytdlp: YtDlpStatus, };

export type YtDlpStatus = { path: string | null, problem: string | null, };

export type ModelStatus = { name: string, description: string, sources: Array<string>, 
/**
 * Download size, when the manifest knows it.
 */
bytes: number | null, 
/**
 * Separation time compared with htdemucs (4 for the htdemucs_ft bag).
 */
relative_time: number, 
/**
 * What its files here take on disk; `None` when none is here.
 */
disk_bytes: number | null, 
/**
 * Its files here are an imported copy, not the official download.
 */
imported: boolean, } & ({ "state": "ready" } | { "state": "missing" } | { "state": "downloading", fraction: number | null, });

export type Availability = { "state": "ready" } | { "state": "missing" } | { "state": "downloading", fraction: number | null, };

export type PlayerView = { job_id: number, title: string, stems: Array<StemOverview>, output: OutputStatus, state: PlayerState, mix: MixSettings, 
/**
 * Tempo, key and loudness; `None` until the song is analysed (after separating).
 */
analysis: Analysis | null, };

export type PlayerState = { job_id: number, position_secs: number, duration_secs: number, 
/**
 * How far the audio exists: the separated edge while the job runs.
 */
edge_secs: number, 
/**
 * True while the job is still separating.
 */
separating: boolean, playing: boolean, 
/**
 * Playing, but held at the separated edge until more is separated.
 */
waiting: boolean, 
/**
 * The gain the renderer applies to each stem now, mute and solo included.
 */
levels: Array<number>, meters: Array<Meter>, master: Meter, 
/**
 * Changes whenever the waveform overviews grew.
 */
overview_version: number, 
/**
 * Why the player can go no further (the job was cancelled or failed).
 */
ended: string | null, 
/**
 * The tempo (1.0 is the original speed) and transposition in semitones that the
 * renderer applies now.
 */
tempo: number, semitones: number, 
/**
 * A count-in bar is playing; the song waits.
 */
counting_in: boolean, 
/**
 * The song's own tempo, once analysed (the click and count-in need it).
 */
song_bpm: number | null, };

export type Meter = { peak: number, rms: number, };

export type MixSettings = { stems: Array<StemMix>, 
/**
 * The loop in seconds, `[start, end)`.
 */
loop_secs: [number, number] | null, 
/**
 * Tempo, pitch, click and count-in; `None` leaves them as they are (a preset).
 */
practice: Practice | null, };

export type StemMix = { name: string, 
/**
 * Linear gain (1.0 is unchanged).
 */
gain: number, muted: boolean, soloed: boolean, 
/**
 * -1 (left) to 1 (right).
 */
pan: number, };

export type MixPreset = { name: string, 
/**
 * The stems it sets; the others play as separated.
 */
stems: Array<StemMix>, builtin: boolean, };

export type Practice = { 
/**
 * Share of the original speed, 0.5 to 1.5.
 */
tempo: number, 
/**
 * Semitones from the original key, -12 to 12 (fractions are cents).
 */
semitones: number, click: boolean, 
/**
 * Linear, 0 to 1.
 */
click_volume: number, count_in: boolean, };

export type Analysis = { tempo: Tempo | null, key: Key | null, 
/**
 * Of all stems summed, as the song sounds.
 */
mix_loudness: Loudness, 
/**
 * Of each stem, in the stems' order.
 */
stem_loudness: Array<StemLoudness>, };

export type Tempo = { 
/**
 * Beats per minute, to a tenth.
 */
bpm: number, 
/**
 * When each beat falls, in seconds from the start.
 */
beats: Array<number>, 
/**
 * The stem the beats were heard in ("drums", or "mix" without a drums stem).
 */
from: string, };

export type Key = { 
/**
 * Pitch class of the tonic: 0 is C, 9 is A.
 */
tonic: number, mode: KeyMode, 
/**
 * As a musician writes it: "A minor", "F# major".
 */
name: string, 
/**
 * How well the song's pitch content matches the key's profile (correlation, 0 to 1).
 */
confidence: number, };

export type KeyMode = "major" | "minor";

export type Loudness = { 
/**
 * Integrated loudness in LUFS; none for silence.
 */
integrated_lufs: number | null, 
/**
 * True peak in dBTP; none for silence.
 */
true_peak_dbtp: number | null, };

export type StemLoudness = { stem: string, loudness: Loudness, };

export type DragPayload = { path: string, icon: string, };

export type DragSource = { "stem": number } | "mix";

export type StemOverview = { name: string, 
/**
 * The stem's file, once the job has written it.
 */
path: string | null, 
/**
 * `[min, max]` per bucket, over both channels; zero where nothing is separated yet.
 */
peaks: Array<[number, number]>, };

export type OutputStatus = { 
/**
 * The device's name, or `None` when playback is silent.
 */
device: string | null, 
/**
 * [`NO_SOUND_NOTICE`] when there is no sound; `None` when there is.
 */
problem: string | null, 
/**
 * The system's own account of why, for the curious.
 */
details: string | null, };
