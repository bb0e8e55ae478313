// The UI talks to Stemdeck only through `api`: Tauri commands and channels inside the
// app, or `stemdeck serve`'s HTTP API in a browser. Both offer the same typed calls; the
// transport is chosen once, as the page starts.
import { httpApi } from "./transport/http";
import { tauriApi } from "./transport/tauri";

// Every type the calls carry is generated from the Rust types (src-tauri/src/bindings.rs).
export type * from "./bindings";
export type { JobStage as Stage, DeviceChoice as Device } from "./bindings";
export type { Host } from "./transport/host";
export { PRACTICE_IN_APP, TOKEN_NEEDED, useToken } from "./transport/http";

const inApp = "__TAURI_INTERNALS__" in window;

export const api = inApp ? tauriApi : httpApi;

/// Errors from commands arrive as sentences; anything else is shown as text.
export function errorText(e: unknown): string {
  if (typeof e === "string") return e;
  if (e instanceof Error) return e.message;
  return JSON.stringify(e);
}
