// The browser's mixer: the finished stem files decoded into Web Audio buffers, one
// gain → pan chain per stem into a master, all started on the same audio-clock instant so
// they stay sample-locked. It answers with the same PlayerState the app's renderer sends,
// so the mixer view cannot tell them apart. Tempo and pitch are not here: Web Audio can
// only change both together, and the view says so.
import type { Meter, MixSettings, PlayerState, StemMix, StemOverview } from "../bindings";

/// As many waveform buckets as the app's player draws.
const PEAK_BUCKETS = 1600;
/// Gain changes glide over this many seconds, so that a mute never clicks.
const GLIDE_SECS = 0.01;

export interface StemFileSource {
  name: string;
  url: string;
}

interface Chain {
  gain: GainNode;
  pan: StereoPannerNode;
  meter: AnalyserNode;
}

export class WebPlayer {
  private sources: AudioBufferSourceNode[] = [];
  private playing = false;
  /// Song seconds at `startedAt` on the audio clock (or where playback rests).
  private offset = 0;
  private startedAt = 0;
  private loop: [number, number] | null;
  private readonly chains: Chain[];
  private readonly master: GainNode;
  private readonly masterMeter: AnalyserNode;
  private readonly scratch = new Float32Array(2048);

  private constructor(
    readonly jobId: number,
    private readonly ctx: AudioContext,
    private readonly buffers: AudioBuffer[],
    readonly overviews: StemOverview[],
    readonly mix: MixSettings,
    private readonly songBpm: number | null,
  ) {
    this.master = ctx.createGain();
    this.masterMeter = meterNode(ctx);
    this.master.connect(this.masterMeter);
    this.master.connect(ctx.destination);
    this.chains = buffers.map(() => {
      const gain = ctx.createGain();
      const pan = ctx.createStereoPanner();
      const meter = meterNode(ctx);
      gain.connect(meter);
      gain.connect(pan);
      pan.connect(this.master);
      return { gain, pan, meter };
    });
    this.loop = mix.loop_secs ?? null;
    this.applyMix(true);
  }

  /// Fetches and decodes every stem; fails with the first stem that cannot be read.
  static async open(
    jobId: number,
    stems: StemFileSource[],
    saved: MixSettings | null,
    fetchBytes: (url: string) => Promise<ArrayBuffer>,
    songBpm: number | null,
  ): Promise<WebPlayer> {
    const ctx = new AudioContext({ latencyHint: "playback" });
    try {
      const buffers = await Promise.all(
        stems.map(async (stem) => {
          const bytes = await fetchBytes(stem.url);
          try {
            return await ctx.decodeAudioData(bytes);
          } catch {
            throw `This browser cannot decode the ${stem.name} stem; choose WAV or FLAC in Settings and separate it again.`;
          }
        }),
      );
      const overviews = stems.map((stem, i) => ({ name: stem.name, path: stem.url, peaks: peaksOf(buffers[i]) }));
      const mix = mixFor(stems.map((s) => s.name), saved);
      return new WebPlayer(jobId, ctx, buffers, overviews, mix, songBpm);
    } catch (e) {
      await ctx.close();
      throw e;
    }
  }

  get duration(): number {
    return Math.max(0, ...this.buffers.map((b) => b.duration));
  }

  /// Whether the browser's audio output runs (it may wait for a click on the page).
  get outputRunning(): boolean {
    return this.ctx.state === "running";
  }

  position(): number {
    if (!this.playing) return this.offset;
    let at = this.offset + (this.ctx.currentTime - this.startedAt);
    const loop = this.loop;
    if (loop && this.offset < loop[1] && at >= loop[1]) at = loop[0] + ((at - loop[0]) % (loop[1] - loop[0]));
    return Math.min(at, this.duration);
  }

  async play() {
    if (this.playing) return;
    await this.ctx.resume();
    if (this.offset >= this.duration) this.offset = 0;
    this.start(this.offset);
  }

  pause() {
    if (!this.playing) return;
    this.offset = this.position();
    this.stopSources();
    this.playing = false;
  }

  seek(secs: number): number {
    const to = Math.min(Math.max(0, secs), this.duration);
    if (this.playing) this.start(to);
    else this.offset = to;
    return to;
  }

  setGain(stem: number, gain: number) {
    this.stemMix(stem).gain = gain;
    this.applyMix();
  }

  setMute(stem: number, muted: boolean) {
    this.stemMix(stem).muted = muted;
    this.applyMix();
  }

  setSolo(stem: number, soloed: boolean) {
    this.stemMix(stem).soloed = soloed;
    this.applyMix();
  }

  setPan(stem: number, pan: number) {
    this.stemMix(stem).pan = Math.min(1, Math.max(-1, pan));
    this.applyMix();
  }

  /// Loops `[start, end)`; playback already inside the region carries on seamlessly, and
  /// playback elsewhere jumps to its start.
  setLoop(region: [number, number] | null) {
    const at = this.position();
    this.loop = region && region[1] - region[0] > 0.01 ? region : null;
    this.mix.loop_secs = this.loop;
    if (!this.playing) return;
    if (this.loop && (at < this.loop[0] || at >= this.loop[1])) {
      this.start(this.loop[0]);
      return;
    }
    this.offset = at;
    this.startedAt = this.ctx.currentTime;
    for (const source of this.sources) this.setSourceLoop(source);
  }

  state(): PlayerState {
    const position = this.position();
    return {
      job_id: this.jobId,
      position_secs: position,
      duration_secs: this.duration,
      edge_secs: this.duration,
      separating: false,
      playing: this.playing,
      waiting: false,
      levels: this.levels(),
      meters: this.chains.map((c) => this.read(c.meter)),
      master: this.read(this.masterMeter),
      overview_version: 0,
      ended: null,
      tempo: 1,
      semitones: 0,
      counting_in: false,
      song_bpm: this.songBpm,
    };
  }

  /// The whole song as the mixer sounds now, as 16-bit stereo WAV bytes.
  async renderMix(): Promise<Blob> {
    const rate = this.buffers[0]?.sampleRate ?? 44100;
    const frames = Math.max(1, Math.ceil(this.duration * rate));
    const offline = new OfflineAudioContext(2, frames, rate);
    const levels = this.levels();
    this.buffers.forEach((buffer, i) => {
      const source = offline.createBufferSource();
      source.buffer = buffer;
      const gain = offline.createGain();
      gain.gain.value = levels[i];
      const pan = offline.createStereoPanner();
      pan.pan.value = this.mix.stems[i].pan;
      source.connect(gain).connect(pan).connect(offline.destination);
      source.start(0);
    });
    return wavBlob(await offline.startRendering());
  }

  async close() {
    this.stopSources();
    this.playing = false;
    await this.ctx.close();
  }

  private start(at: number) {
    this.stopSources();
    if (this.loop && (at < this.loop[0] || at >= this.loop[1])) at = this.loop[0];
    // A little ahead, so that every source starts on the same frame.
    const when = this.ctx.currentTime + 0.02;
    this.sources = this.buffers.map((buffer, i) => {
      const source = this.ctx.createBufferSource();
      source.buffer = buffer;
      this.setSourceLoop(source);
      source.connect(this.chains[i].gain);
      source.start(when, at);
      return source;
    });
    const first = this.sources[0];
    if (first) {
      first.onended = () => {
        // Only the end of the song, not a stop for a seek or a pause.
        if (this.sources[0] !== first) return;
        this.sources = [];
        this.playing = false;
        this.offset = 0;
      };
    }
    this.offset = at;
    this.startedAt = when;
    this.playing = true;
  }

  private setSourceLoop(source: AudioBufferSourceNode) {
    source.loop = this.loop != null;
    if (this.loop) {
      source.loopStart = this.loop[0];
      source.loopEnd = this.loop[1];
    }
  }

  private stopSources() {
    const old = this.sources;
    this.sources = [];
    for (const source of old) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // Never started: nothing to stop.
      }
      source.disconnect();
    }
  }

  private stemMix(stem: number): StemMix {
    const mix = this.mix.stems[stem];
    if (!mix) throw `There is no stem ${stem + 1}.`;
    return mix;
  }

  /// Each stem's gain with mute and solo applied, as the app's renderer reports it.
  private levels(): number[] {
    const anySolo = this.mix.stems.some((s) => s.soloed);
    return this.mix.stems.map((s) => (s.muted || (anySolo && !s.soloed) ? 0 : s.gain));
  }

  private applyMix(now = false) {
    const t = this.ctx.currentTime;
    this.levels().forEach((level, i) => {
      const { gain, pan } = this.chains[i];
      if (now) {
        gain.gain.value = level;
        pan.pan.value = this.mix.stems[i].pan;
      } else {
        gain.gain.setTargetAtTime(level, t, GLIDE_SECS);
        pan.pan.setTargetAtTime(this.mix.stems[i].pan, t, GLIDE_SECS);
      }
    });
  }

  private read(meter: AnalyserNode): Meter {
    if (!this.playing) return { peak: 0, rms: 0 };
    meter.getFloatTimeDomainData(this.scratch);
    let peak = 0;
    let sum = 0;
    for (const v of this.scratch) {
      peak = Math.max(peak, Math.abs(v));
      sum += v * v;
    }
    return { peak, rms: Math.sqrt(sum / this.scratch.length) };
  }
}

function meterNode(ctx: BaseAudioContext): AnalyserNode {
  const meter = ctx.createAnalyser();
  meter.fftSize = 2048;
  return meter;
}

/// The saved mix for these stems, or each stem as separated.
function mixFor(names: string[], saved: MixSettings | null): MixSettings {
  const stems = names.map((name) => {
    const kept = saved?.stems.find((s) => s.name === name);
    return { name, gain: kept?.gain ?? 1, muted: kept?.muted ?? false, soloed: kept?.soloed ?? false, pan: kept?.pan ?? 0 };
  });
  return { stems, loop_secs: saved?.loop_secs ?? null, practice: null };
}

/// `[min, max]` per bucket over both channels.
function peaksOf(buffer: AudioBuffer): Array<[number, number]> {
  const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
  const frames = buffer.length;
  const buckets = Math.min(PEAK_BUCKETS, Math.max(1, frames));
  const peaks: Array<[number, number]> = [];
  for (let b = 0; b < buckets; b++) {
    const from = Math.floor((b * frames) / buckets);
    const to = Math.max(from + 1, Math.floor(((b + 1) * frames) / buckets));
    let lo = 0;
    let hi = 0;
    for (const data of channels) {
      for (let i = from; i < to; i++) {
        const v = data[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    peaks.push([lo, hi]);
  }
  return peaks;
}

/// 16-bit PCM WAV, with TPDF dither so that quiet fades do not turn to grit.
function wavBlob(audio: AudioBuffer): Blob {
  const channels = audio.numberOfChannels;
  const frames = audio.length;
  const bytes = new ArrayBuffer(44 + frames * channels * 2);
  const view = new DataView(bytes);
  const text = (at: number, s: string) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + frames * channels * 2, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, channels, true);
  view.setUint32(24, audio.sampleRate, true);
  view.setUint32(28, audio.sampleRate * channels * 2, true);
  view.setUint16(32, channels * 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, frames * channels * 2, true);
  const data = Array.from({ length: channels }, (_, c) => audio.getChannelData(c));
  let at = 44;
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++) {
      const dither = (Math.random() - Math.random()) / 32768;
      const v = Math.max(-1, Math.min(1, data[c][i] + dither));
      view.setInt16(at, Math.round(v * 32767), true);
      at += 2;
    }
  }
  return new Blob([bytes], { type: "audio/wav" });
}
