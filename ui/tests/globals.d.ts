// What the mock adds to the page (mock-ipc.js) and the app's Tauri runtime reads.
interface Window {
  __TAURI_INTERNALS__: unknown;
  __TAURI_EVENT_PLUGIN_INTERNALS__: unknown;
  __mock: any;
}
