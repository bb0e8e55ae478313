export function clock(secs: number): string {
  const s = Math.max(0, Math.floor(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

export function duration(secs: number): string {
  if (secs < 1) return "<1 s";
  if (secs < 60) return `${Math.round(secs)} s`;
  const m = Math.floor(secs / 60);
  const s = Math.round(secs % 60);
  return s === 0 ? `${m} min` : `${m} min ${s} s`;
}

export function bytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e7) return `${Math.round(n / 1e6)} MB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${Math.round(n / 1e3)} kB`;
}

export const STAGE_LABELS: Record<string, string> = {
  queued: "Queued",
  downloading: "Downloading",
  loading_model: "Loading model",
  decoding: "Decoding",
  separating: "Separating",
  writing: "Writing stems",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
  interrupted: "Interrupted",
  analysing: "Analysing",
};

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

/// A stem's name as people say it. Two-stem runs write "no_vocals", which is the
/// instrumental; any other "no_x" reads as "No x".
export function stemLabel(name: string): string {
  if (name === "no_vocals") return "Instrumental";
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/// The note on a model that takes longer than one pass, e.g. "about 4× the time".
export function slowerNote(relativeTime: number): string | null {
  return relativeTime > 1 ? `about ${Math.round(relativeTime * 10) / 10}× the time` : null;
}
