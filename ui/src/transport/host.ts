// What the window the UI runs in can do. The app and a browser share every view; where a
// browser cannot do what the app does, the view says so instead of pretending.
export interface Host {
  kind: "app" | "browser";
  /// Tempo, pitch, click and count-in: the app's renderer stretches time without moving
  /// the pitch; a browser's Web Audio cannot.
  practice: boolean;
  /// Files on this computer: show in folder, drag out, choose folders and programs.
  files: boolean;
  /// Saved mixer presets (kept in the app's settings).
  presets: boolean;
  /// Playing a song while it is still separating (the app's player reads the stems as
  /// they are separated; a browser has only finished files).
  listenWhileSeparating: boolean;
}
