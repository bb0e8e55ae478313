// The generated song the end-to-end tests drop: a kick drum, a bass line and a chord, so
// that every stem has something in it, as 16-bit stereo WAV.
import { writeFileSync } from "node:fs";

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
