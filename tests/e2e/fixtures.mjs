// What the end-to-end tests (the app's and the browser's) start from: a generated song
// and a model folder.
import { copyFileSync, existsSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";

/// The real htdemucs weights when `realWeights` exists, otherwise the small fixture model,
/// in `models` under the names the model store looks for.
export function prepareModels(models, root, realWeights) {
  if (existsSync(realWeights)) {
    symlinkSync(realWeights, path.join(models, "955717e8.safetensors"));
    console.log(`model: real htdemucs weights from ${realWeights}`);
  } else {
    copyFileSync(path.join(root, "crates/demucs/tests/fixtures/tiny_htdemucs_th.fixture"), path.join(models, "955717e8-8726e21a.th"));
    console.log(`model: the small fixture model (${realWeights} not found)`);
  }
}

/// A stereo song: a kick drum, a bass line and a chord, so that every stem has something
/// in it, as 16-bit WAV.

export function writeSong(file, seconds = 20) {
  const rate = 44100;
  const frames = rate * seconds;
  const data = Buffer.alloc(frames * 4);
  const bassNotes = [55, 55, 73.4, 65.4];
  for (let i = 0; i < frames; i++) {
    const t = i / rate;
    const beat = t % 0.5;
    const kick = Math.sin(2 * Math.PI * (50 + 80 * Math.exp(-beat * 30)) * beat) * Math.exp(-beat * 12);
    const bass = 0.5 * Math.sin(2 * Math.PI * bassNotes[Math.floor(t / 2) % 4] * t);
    const chord = 0.15 * [261.6, 329.6, 392].reduce((s, f) => s + Math.sin(2 * Math.PI * f * t), 0);
    const l = 0.3 * (kick + bass + chord);
    const r = 0.3 * (kick + bass + 0.6 * chord);
    data.writeInt16LE(Math.round(Math.max(-1, Math.min(1, l)) * 32767), i * 4);
    data.writeInt16LE(Math.round(Math.max(-1, Math.min(1, r)) * 32767), i * 4 + 2);
  }
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVEfmt ", 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(2, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 4, 28);
  header.writeUInt16LE(4, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(data.length, 40);
  writeFileSync(file, Buffer.concat([header, data]));
}
