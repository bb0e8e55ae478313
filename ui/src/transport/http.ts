// The browser's transport: the same calls as the app's, over `stemdeck serve`'s HTTP API
// (fetch, and Server-Sent Events read from fetch so that they carry the token), with the
// stems played by Web Audio in this tab.
import type {
  AddReport,
  Analysis,
  AppSettings,
  DragPayload,
  DragSource,
  Job,
  JobSettings,
  JobUpdate,
  MixPreset,
  MixSettings,
  ModelStatus,
  PlayerState,
  PlayerView,
  Practice,
  SettingChoices,
  SettingsView,
  StemOverview,
} from "../bindings";
import type { Host } from "./host";
import type { tauriApi } from "./tauri";
import { WebPlayer } from "./web-player";

export const BROWSER_HOST: Host = {
  kind: "browser",
  practice: false,
  files: false,
  presets: false,
  listenWhileSeparating: false,
};

const API = "/api/v1";
const TOKEN_KEY = "stemdeck-token";
const NEEDS_APP = "needs the Stemdeck app: a browser cannot reach files on the server's disk";
export const PRACTICE_IN_APP =
  "Tempo, pitch, click and count-in play in the Stemdeck app: a browser cannot change the tempo without changing the pitch.";
export const TOKEN_NEEDED =
  "This server asks for its access token. Open the address stemdeck serve printed (it ends in #token=…), or the one in its server-token file.";

/// A token in the address (`#token=…`, which never reaches the server's logs) is kept for
/// this browser and taken out of the address bar.
function takeTokenFromAddress() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

/// Keeps a token typed into the page for this browser.
export function useToken(token: string) {
  localStorage.setItem(TOKEN_KEY, token.trim());
}

function authHeaders(): Record<string, string> {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

/// The request's answer when it succeeded; otherwise its `{error, message}` as the thrown
/// sentence, as the app's commands throw theirs.
async function request(path: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers as Record<string, string>) } });
  } catch {
    throw "The Stemdeck server cannot be reached. Is stemdeck serve still running?";
  }
  if (response.ok) return response;
  if (response.status === 401) {
    localStorage.removeItem(TOKEN_KEY);
    throw TOKEN_NEEDED;
  }
  let message = `The server answered ${response.status} ${response.statusText}.`;
  try {
    const body = await response.json();
    if (typeof body?.message === "string") message = body.message;
  } catch {
    // Not JSON: the status says enough.
  }
  throw message;
}

async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await request(path, init)).json() as Promise<T>;
}

function sendJson(method: string, body: unknown): RequestInit {
  return { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}

interface ServerEvent {
  event: string;
  data: string;
}

/// Reads a Server-Sent Events stream, calling `onEvent` for each event until it ends.
async function readEvents(response: Response, onEvent: (e: ServerEvent) => void) {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let event = "message";
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).replace(/\r$/, "");
      buffered = buffered.slice(newline + 1);
      if (line === "") {
        if (data.length) onEvent({ event, data: data.join("\n") });
        event = "message";
        data = [];
      } else if (line.startsWith("event:")) {
        event = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    }
  }
}

/// Where each job's mixer was left, in this browser (the server keeps no mixer state).
const mixKey = (jobId: number) => `stemdeck-mix-${jobId}`;

function savedMix(jobId: number): MixSettings | null {
  try {
    return JSON.parse(localStorage.getItem(mixKey(jobId)) ?? "null");
  } catch {
    return null;
  }
}

let player: WebPlayer | null = null;
let playerTitle = "";

function openedPlayer(): WebPlayer {
  if (!player) throw "Open a finished song first.";
  return player;
}

/// Runs a mixer change and remembers the mix for the next visit.
async function onPlayer(change: (p: WebPlayer) => void): Promise<void> {
  const p = openedPlayer();
  change(p);
  localStorage.setItem(mixKey(p.jobId), JSON.stringify(p.mix));
}

/// Hands a file to the browser to save: straight from the server where no token is needed
/// (so a large ZIP streams to disk), through memory where the request must carry one.
async function download(url: string, fallbackName: string): Promise<string> {
  const response = await request(url);
  const name = fileNameOf(response.headers.get("content-disposition")) ?? fallbackName;
  if (!localStorage.getItem(TOKEN_KEY)) {
    response.body?.cancel();
    saveAs(url, name);
  } else {
    const objectUrl = URL.createObjectURL(await response.blob());
    saveAs(objectUrl, name);
    setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
  }
  return name;
}

function saveAs(href: string, name: string) {
  const link = document.createElement("a");
  link.href = href;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

function fileNameOf(disposition: string | null): string | null {
  if (!disposition) return null;
  const encoded = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (encoded) return decodeURIComponent(encoded[1]);
  return /filename="([^"]+)"/i.exec(disposition)?.[1] ?? null;
}

async function uploadFiles(files: File[]): Promise<AddReport> {
  const report: AddReport = { added: [], refused: [] };
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      report.added.push(await json<Job>(`${API}/jobs`, { method: "POST", body: form }));
    } catch (e) {
      // The server names the file; the list already does.
      report.refused.push({ name: file.name, reason: String(e).replace(`${file.name}: `, "") });
    }
  }
  return report;
}

/// The browser's file dialog; an empty report when the user closes it.
function pickFiles(): Promise<AddReport> {
  return new Promise((resolve, reject) => {
    const input = document.createElement("input");
    input.type = "file";
    input.multiple = true;
    input.accept = "audio/*,video/*,.flac,.opus,.ogg,.m4a,.aac,.caf,.aif,.aiff,.mkv,.webm";
    input.addEventListener("change", () => uploadFiles([...(input.files ?? [])]).then(resolve, reject));
    input.addEventListener("cancel", () => resolve({ added: [], refused: [] }));
    input.click();
  });
}

async function addLinks(text: string): Promise<AddReport> {
  const links = text.split(/\s+/).filter(Boolean);
  if (links.length === 0) throw "Paste a YouTube link or video ID first.";
  const report: AddReport = { added: [], refused: [] };
  for (const link of links) {
    try {
      report.added.push(await json<Job>(`${API}/jobs`, sendJson("POST", { link })));
    } catch (e) {
      report.refused.push({ name: link, reason: String(e) });
    }
  }
  return report;
}

/// Follows every job change; after a dropped connection it reconnects and reports each
/// job as it is now, so that nothing missed in between stays stale.
async function watchJobs(onUpdate: (u: JobUpdate) => void): Promise<void> {
  const connect = () => request(`${API}/events`, { headers: { accept: "text/event-stream" } });
  const follow = (response: Response) =>
    readEvents(response, (e) => {
      if (e.event === "job") onUpdate(JSON.parse(e.data));
    });
  const first = await connect();
  (async () => {
    let response: Response | null = first;
    for (;;) {
      if (response) await follow(response).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 2000));
      response = await connect().catch(() => null);
      if (response) {
        const jobs = await json<(Job & { progress: number; eta_secs: number | null })[]>(`${API}/jobs`).catch(() => []);
        for (const job of jobs) onUpdate(atRest(job));
      }
    }
  })();
}

function atRest(job: Job & { progress: number; eta_secs: number | null }): JobUpdate {
  return {
    id: job.id,
    title: job.title,
    stage: job.stage,
    progress: job.progress,
    eta_secs: job.eta_secs,
    elapsed_secs: job.elapsed_secs,
    error: job.error,
    can_retry: job.can_retry,
    download: null,
    from_cache: job.from_cache,
    listenable: false,
  };
}

async function openPlayer(jobId: number): Promise<PlayerView> {
  const job = await json<Job>(`${API}/jobs/${jobId}`);
  if (job.stage !== "done") {
    throw job.stage === "failed" || job.stage === "cancelled" || job.stage === "interrupted"
      ? `“${job.title}” has no stems; retry it to separate it.`
      : `“${job.title}” is still being separated. In a browser its stems play once they are written; the Stemdeck app plays them while it separates.`;
  }
  if (job.missing_stems?.length) {
    throw `Stems of “${job.title}” were moved or deleted on the server (${job.missing_stems.join(", ")}); retry it to separate it again.`;
  }
  await closePlayer();
  const opened = await WebPlayer.open(
    job.id,
    job.stems.map((s) => ({ name: s.name, url: s.path })),
    savedMix(job.id) ?? job.mix,
    async (url) => (await request(url)).arrayBuffer(),
    job.analysis?.tempo?.bpm ?? null,
  );
  player = opened;
  playerTitle = job.title;
  return {
    job_id: job.id,
    title: job.title,
    stems: opened.overviews,
    output: { device: "this browser", problem: null, details: null },
    state: opened.state(),
    mix: opened.mix,
    analysis: job.analysis,
  };
}

async function closePlayer(): Promise<void> {
  const old = player;
  player = null;
  await old?.close();
}

function settingsView(server: { job: JobSettings; choices: SettingChoices; fast_precision_available: boolean }): SettingsView {
  return {
    settings: { job: server.job, output_dir: null, ytdlp_path: null, mix_presets: [] },
    default_output_dir: "the server's stems folder",
    choices: server.choices,
    fast_precision_available: server.fast_precision_available,
    ytdlp: { path: null, problem: null },
  };
}

async function downloadModel(name: string, onProgress: (s: ModelStatus) => void): Promise<ModelStatus> {
  const response = await request(`${API}/models/${encodeURIComponent(name)}/download`, { method: "POST" });
  let result: ModelStatus | null = null;
  let failure: string | null = null;
  await readEvents(response, (e) => {
    const value = JSON.parse(e.data);
    if (e.event === "progress") onProgress(value);
    else if (e.event === "done") result = value;
    else if (e.event === "error") failure = value.message;
  });
  if (failure) throw failure;
  if (!result) throw `The download of ${name} stopped before it finished; try again.`;
  return result;
}

const inApp = (what: string) => () => Promise.reject(`${what} ${NEEDS_APP}.`);

takeTokenFromAddress();

export const httpApi: typeof tauriApi = {
  host: BROWSER_HOST,
  listJobs: () => json<Job[]>(`${API}/jobs`),
  startupNotices: async () => [],
  watchJobs,
  addPaths: (_paths: string[]) => Promise.reject("In a browser, drop the songs themselves, or choose them with Add files…"),
  pickFiles,
  uploadFiles,
  addLinks,
  cancelJob: (id: number) => request(`${API}/jobs/${id}/cancel`, { method: "POST" }).then(() => undefined),
  retryJob: (id: number) => request(`${API}/jobs/${id}/retry`, { method: "POST" }).then(() => undefined),
  removeJob: (id: number) => request(`${API}/jobs/${id}`, { method: "DELETE" }).then(() => undefined),

  openPlayer,
  closePlayer,
  async watchPlayer(onTick: (s: PlayerState) => void): Promise<void> {
    setInterval(() => {
      if (player) onTick(player.state());
    }, 33);
  },
  play: () => openedPlayer().play(),
  pause: async () => openedPlayer().pause(),
  seek: async (secs: number) => openedPlayer().seek(secs),
  setPan: (stem: number, pan: number) => onPlayer((p) => p.setPan(stem, pan)),
  async setPractice(practice: Practice): Promise<void> {
    const neutral = practice.tempo === 1 && practice.semitones === 0 && !practice.click && !practice.count_in;
    if (!neutral) throw PRACTICE_IN_APP;
  },
  playerAnalysis: async () => (player ? (await json<Job>(`${API}/jobs/${player.jobId}`)).analysis : null) as Analysis | null,
  playerStems: async () => (player?.overviews ?? []) as StemOverview[],
  mixPresets: async () => [] as MixPreset[],
  applyPreset: inApp("Mix presets") as (name: string) => Promise<MixSettings>,
  savePreset: inApp("Mix presets") as (name: string) => Promise<MixPreset[]>,
  deletePreset: inApp("Mix presets") as (name: string) => Promise<MixPreset[]>,
  prepareDrag: inApp("Dragging stems out") as (source: DragSource) => Promise<DragPayload>,
  startDrag: inApp("Dragging stems out") as (payload: DragPayload) => Promise<void>,
  setGain: (stem: number, gain: number) => onPlayer((p) => p.setGain(stem, gain)),
  setMute: (stem: number, muted: boolean) => onPlayer((p) => p.setMute(stem, muted)),
  setSolo: (stem: number, soloed: boolean) => onPlayer((p) => p.setSolo(stem, soloed)),
  setLoop: (start: number | null, end: number | null) =>
    onPlayer((p) => p.setLoop(start != null && end != null ? [start, end] : null)),

  revealJob: inApp("Showing the folder") as (id: number) => Promise<void>,
  async exportZip(id: number): Promise<string | null> {
    const name = await download(`${API}/jobs/${id}/zip`, "stems.zip");
    return `${name} to your downloads`;
  },
  async exportMix(): Promise<string | null> {
    const p = openedPlayer();
    const wav = await p.renderMix();
    const url = URL.createObjectURL(wav);
    const name = `${playerTitle} - mix.wav`;
    saveAs(url, name);
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return `${name} (your downloads)`;
  },

  getSettings: async () => settingsView(await json(`${API}/settings`)),
  saveSettings: async (settings: AppSettings) => settingsView(await json(`${API}/settings`, sendJson("PUT", { job: settings.job }))),
  chooseOutputDir: inApp("Choosing the stems folder") as () => Promise<string | null>,
  chooseYtdlp: inApp("Choosing yt-dlp") as () => Promise<string | null>,
  listModels: () => json<ModelStatus[]>(`${API}/models`),
  downloadModel,
  importModel: inApp("Importing a checkpoint") as () => Promise<ModelStatus | null>,
  removeModel: (name: string) => json<ModelStatus>(`${API}/models/${encodeURIComponent(name)}`, { method: "DELETE" }),
};
