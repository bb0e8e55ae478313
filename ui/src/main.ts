// Wires the window together: input (drop, dialog, paste), the queue, the mixer, the
// settings and the keyboard.
import { getCurrentWebview } from "@tauri-apps/api/webview";
import { api, errorText, TOKEN_NEEDED, useToken, type AddReport, type Job } from "./api";
import { el } from "./format";
import { MixerView } from "./mixer";
import { QueueView } from "./queue";
import { SettingsDialog } from "./settings";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

let toastTimer: number | undefined;
function toast(message: string) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => (box.hidden = true), 6000);
}

const mixer = new MixerView($("mixer"), $("results-empty"), toast, (message) => {
  queue.select(null);
  toast(message);
});
const help = $("help-dialog") as HTMLDialogElement;
$("help").addEventListener("click", () => help.showModal());
const queue = new QueueView(
  $("jobs") as HTMLUListElement,
  $("jobs-empty"),
  (job) => openJob(job),
  (id) => {
    if (mixer.jobId === id) mixer.hide();
  },
  toast,
);
const settings = new SettingsDialog($("settings") as HTMLDialogElement, toast);

async function openJob(job: Job) {
  queue.select(job.id);
  try {
    mixer.show(await api.openPlayer(job.id));
  } catch (e) {
    toast(errorText(e));
  }
}

function showReport(report: AddReport) {
  for (const job of report.added) queue.add(job);
  const list = $("refused");
  list.replaceChildren(
    ...report.refused.map((r) =>
      el("li", {}, el("strong", { text: r.name }), el("span", { text: ` — ${r.reason}` })),
    ),
  );
}

async function addPaths(paths: string[]) {
  try {
    showReport(await api.addPaths(paths));
  } catch (e) {
    toast(errorText(e));
  }
}

function setupInput() {
  const zone = $("drop-zone");
  if (api.host.kind === "app") {
    getCurrentWebview()
      .onDragDropEvent((event) => {
        const kind = event.payload.type;
        document.body.classList.toggle("dragging", kind === "enter" || kind === "over");
        if (kind === "drop") addPaths(event.payload.paths);
      })
      .catch((e) => toast(`Dropping files is unavailable: ${errorText(e)}`));
  } else {
    setupBrowserDrop();
  }
  const pick = async () => {
    try {
      showReport(await api.pickFiles());
    } catch (e) {
      toast(errorText(e));
    }
  };
  $("add-files").addEventListener("click", pick);
  zone.addEventListener("click", pick);
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") pick();
  });
  $("link-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const box = $<HTMLTextAreaElement>("links");
    try {
      showReport(await api.addLinks(box.value));
      box.value = "";
    } catch (err) {
      toast(errorText(err));
    }
  });
}

/// In a browser, dropped songs are uploaded to the server (a folder's songs with it).
function setupBrowserDrop() {
  let depth = 0;
  const dragging = (on: boolean) => document.body.classList.toggle("dragging", on);
  document.addEventListener("dragenter", (e) => {
    if (!e.dataTransfer?.types.includes("Files")) return;
    depth++;
    dragging(true);
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) dragging(false);
  });
  document.addEventListener("dragover", (e) => {
    if (e.dataTransfer?.types.includes("Files")) e.preventDefault();
  });
  document.addEventListener("drop", async (e) => {
    if (!e.dataTransfer?.types.includes("Files")) return;
    e.preventDefault();
    depth = 0;
    dragging(false);
    const files = await droppedFiles(e.dataTransfer);
    if (files.length === 0) return;
    toast(files.length === 1 ? `Uploading ${files[0].name}…` : `Uploading ${files.length} files…`);
    try {
      showReport(await api.uploadFiles(files));
    } catch (err) {
      toast(errorText(err));
    }
  });
}

/// The dropped files, and the files inside dropped folders.
async function droppedFiles(transfer: DataTransfer): Promise<File[]> {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry());
  // Files made by a page rather than the desktop have no entries.
  if (entries.length === 0 || entries.some((e) => e === null)) return [...transfer.files];
  const files: File[] = [];
  const walk = async (entry: FileSystemEntry): Promise<void> => {
    if (entry.isFile) {
      files.push(await new Promise<File>((ok, fail) => (entry as FileSystemFileEntry).file(ok, fail)));
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry!);
  return files;
}

/// Space plays and pauses; M or S followed by a stem number mutes or solos it.
function setupKeyboard() {
  let armed: { kind: "m" | "s"; at: number } | null = null;
  document.addEventListener("keydown", (e) => {
    const target = e.target as HTMLElement;
    if (target.closest("input, textarea, select, dialog") || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.toLowerCase();
    if (key === " ") {
      if (target.closest("button")) return;
      e.preventDefault();
      mixer.togglePlay();
    } else if (e.key === "?") {
      help.showModal();
    } else if (key === "l" && mixer.jobId !== null) {
      mixer.toggleLoop();
    } else if ((e.key === "+" || e.key === "=") && mixer.jobId !== null) {
      mixer.zoomBy(2);
    } else if (e.key === "-" && mixer.jobId !== null) {
      mixer.zoomBy(0.5);
    } else if (e.key === "0" && mixer.jobId !== null && !armed) {
      mixer.zoomFit();
    } else if ((e.key === "[" || e.key === "{") && mixer.jobId !== null) {
      if (e.shiftKey || e.key === "{") mixer.nudgePitch(-1);
      else mixer.nudgeTempo(-0.05);
    } else if ((e.key === "]" || e.key === "}") && mixer.jobId !== null) {
      if (e.shiftKey || e.key === "}") mixer.nudgePitch(1);
      else mixer.nudgeTempo(0.05);
    } else if (key === "c" && mixer.jobId !== null) {
      mixer.toggleClick();
    } else if (key === "m" || key === "s") {
      armed = { kind: key, at: performance.now() };
    } else if (/^[1-9]$/.test(key) && armed && performance.now() - armed.at < 2000) {
      const index = Number(key) - 1;
      if (armed.kind === "m") mixer.toggleMute(index);
      else mixer.toggleSolo(index);
      armed = null;
    }
  });
}

/// A mixer button that writes a file after a save dialog and says where it went; it stays
/// disabled while the file is written so a second click does not start a second export.
function exportButton(id: string, write: (jobId: number) => Promise<string | null>, savedMessage: (path: string) => string) {
  const button = $<HTMLButtonElement>(id);
  const label = button.textContent;
  button.addEventListener("click", async () => {
    const jobId = mixer.jobId;
    if (jobId === null) return;
    button.disabled = true;
    button.textContent = "Exporting…";
    try {
      const saved = await write(jobId);
      if (saved) toast(savedMessage(saved));
    } catch (e) {
      toast(errorText(e));
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });
}

/// A browser without the server's token asks for it, then starts again with it.
function askForToken() {
  const dialog = $("token-dialog") as HTMLDialogElement;
  $("token-form").addEventListener("submit", () => {
    useToken($<HTMLInputElement>("token-input").value);
    location.reload();
  });
  dialog.showModal();
}

async function start() {
  // What only the app can do is hidden in a browser (styles.css, `data-needs`).
  document.body.dataset.host = api.host.kind;
  if (api.host.kind === "browser") {
    document.querySelector("#results-empty p")!.textContent =
      "Drums, bass, vocals and the rest, separated by your own Stemdeck server. Finished songs open here in a mixer.";
    // No save dialog comes: the browser downloads the file.
    $("export-zip").textContent = "Download ZIP";
    $("export-mix").textContent = "Download mix";
  }
  setupInput();
  setupKeyboard();
  $("open-settings").addEventListener("click", () => settings.open());
  $("reveal").addEventListener("click", () => {
    if (mixer.jobId !== null) api.revealJob(mixer.jobId).catch((e) => toast(errorText(e)));
  });
  exportButton("export-zip", (jobId) => api.exportZip(jobId), (saved) => `Saved ${saved}`);
  exportButton("export-mix", () => api.exportMix(), (saved) => `Saved the mix to ${saved}`);
  try {
    await api.watchJobs((update) => queue.apply(update));
    await api.watchPlayer((state) => mixer.tick(state));
    queue.setJobs(await api.listJobs());
    for (const notice of await api.startupNotices()) toast(notice);
  } catch (e) {
    if (errorText(e) === TOKEN_NEEDED) askForToken();
    else toast(errorText(e));
  }
  document.body.dataset.ready = "true";
}

start();
