// End to end on the real app: the release-equivalent binary in a real WebKitGTK window
// under Xvfb, driven through tauri-driver. It drops a generated song onto the window, waits
// for a real separation (the shared htdemucs weights when present, otherwise the small
// fixture model), then checks the stems, their waveforms and that play, mute and solo
// change the mixer's state as the Rust renderer reports it. Screenshots are kept in
// artifacts/screenshots.
//
// Run by scripts/test-app.sh (which builds the app and starts Xvfb and tauri-driver).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, copyFileSync, existsSync, rmSync, readFileSync, chmodSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { WebDriver, sleep } from "./webdriver.mjs";
import { prepareModels, writeSong } from "./fixtures.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(root, "target");
const app = process.env.STEMDECK_APP ?? path.join(targetDir, "debug", "stemdeck-app");
const shots = process.env.STEMDECK_SCREENSHOTS ?? path.join(root, "artifacts", "screenshots");
const shared = process.env.STEMDECK_SHARED_DIR ?? path.join(root, "..", "shared");
const realWeights = path.join(shared, "models", "htdemucs_955717e8_from_onnx.safetensors");
const PORT = 4444;

let driver;
let tauriDriver;
let work;
let song;

before(async () => {
  assert.ok(existsSync(app), `build the app first (cargo build -p stemdeck-app): ${app} is missing`);
  mkdirSync(shots, { recursive: true });
  work = mkdtempSync(path.join(tmpdir(), "stemdeck-e2e-"));
  const models = path.join(work, "models");
  const data = path.join(work, "data");
  mkdirSync(models);
  mkdirSync(data);
  prepareModels(models, root, realWeights);
  song = path.join(work, "E2E Song.wav");
  writeSong(song);

  // Links: a fake yt-dlp "downloads" 6 s of the song as real AAC, and the built-in
  // downloader meets a proxy port where nothing listens, as it would offline, so the app
  // falls back to yt-dlp whatever this machine's network.
  const tools = path.join(work, "tools");
  mkdirSync(tools);
  const m4a = path.join(tools, "video.m4a");
  execFileSync("ffmpeg", ["-hide_banner", "-loglevel", "error", "-y", "-i", song, "-t", "6", "-c:a", "aac", m4a]);
  copyFileSync(path.join(root, "tests/fixtures/fake-yt-dlp.sh"), path.join(tools, "yt-dlp"));
  chmodSync(path.join(tools, "yt-dlp"), 0o755);
  writeFileSync(path.join(tools, "fake-yt-dlp.conf"), `AUDIO='${m4a}'\nTITLE='E2E Video - Live Session'\nDELAY=0.5\n`);
  const closedPort = await new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
  const proxy = `http://127.0.0.1:${closedPort}`;
  writeFileSync(
    path.join(data, "settings.json"),
    JSON.stringify({ output_dir: path.join(work, "stems"), ytdlp_path: path.join(tools, "yt-dlp") }),
  );

  tauriDriver = spawn("tauri-driver", ["--port", String(PORT)], {
    env: {
      ...process.env,
      STEMDECK_DATA_DIR: data,
      STEMDECK_MODEL_DIR: models,
      HTTPS_PROXY: proxy,
      https_proxy: proxy,
      NO_PROXY: "localhost,127.0.0.1",
      no_proxy: "localhost,127.0.0.1",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  driver = await WebDriver.connect(`http://127.0.0.1:${PORT}`, app);
  await driver.waitFor("the window to be ready", () => document.body.dataset.ready === "true", 30000);
});

after(async () => {
  try {
    await driver?.quit();
  } catch {}
  tauriDriver?.kill();
  // The app inherits this file's output pipe through tauri-driver; if the WebDriver session
  // ends without closing it (seen once in CI: the web process gone, the app still up), the
  // test runner waits on that pipe forever. Stop whatever copy of this build is left.
  try {
    execFileSync("pkill", ["-f", app]);
  } catch {}
  if (work) rmSync(work, { recursive: true, force: true });
});

async function saveShot(name) {
  writeFileSync(path.join(shots, `${name}.png`), await driver.screenshot());
  // The whole X screen too, as a person would see the window.
  try {
    execFileSync("import", ["-window", "root", path.join(shots, `${name}-screen.png`)], { stdio: "ignore" });
  } catch {}
}

test("a dropped song is separated and its stems play, mute and solo in the mixer", { timeout: 15 * 60 * 1000 }, async () => {
  assert.equal(await driver.execute(() => document.title), "Stemdeck");
  // Drop the file as the window's drag-and-drop would: the same event, the same handler.
  await driver.execute(
    (paths) => window.__TAURI_INTERNALS__.invoke("plugin:event|emit", { event: "tauri://drag-drop", payload: { paths, position: { x: 120, y: 120 } } }),
    [song],
  );
  await driver.waitFor("the job to be queued", () => document.querySelector("li.job .title")?.textContent === "E2E Song", 10000);

  const progress = await driver.waitFor(
    "separation progress",
    () => {
      const row = document.querySelector("li.job");
      const pct = Number(row?.querySelector(".bar")?.getAttribute("aria-valuenow"));
      // Mid-way, for a screenshot that shows the bar moving.
      return row?.dataset.stage === "separating" && pct >= 20 ? { pct, text: row.innerText } : null;
    },
    5 * 60 * 1000,
  );
  console.log(`in progress: ${progress.text.replace(/\s+/g, " ")}`);
  await saveShot("app-queue");

  const done = await driver.waitFor(
    "the job to finish",
    () => {
      const row = document.querySelector("li.job");
      if (row?.dataset.stage === "failed") return { failed: row.innerText };
      return row?.dataset.stage === "done" ? { text: row.innerText } : null;
    },
    10 * 60 * 1000,
  );
  assert.equal(done.failed, undefined, `the job failed: ${done.failed}`);
  console.log(`done: ${done.text.replace(/\s+/g, " ")}`);

  await driver.click("li.job.openable");
  const stems = await driver.waitFor(
    "the mixer",
    () => {
      const rows = [...document.querySelectorAll("#mixer:not([hidden]) li.stem")];
      return rows.length ? rows.map((r) => r.dataset.stem) : null;
    },
    60000,
  );
  assert.deepEqual(stems, ["drums", "bass", "other", "vocals"]);
  const drawn = await driver.execute(() =>
    [...document.querySelectorAll("canvas.waveform")].map((c) => {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let lit = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) lit++;
      return { buckets: Number(c.dataset.drawn), lit: lit / (d.length / 4) };
    }),
  );
  for (const [i, w] of drawn.entries()) {
    assert.equal(w.buckets, 1600, `stem ${stems[i]} has its peaks`);
    assert.ok(w.lit > 0.005, `stem ${stems[i]}'s waveform is drawn (${w.lit})`);
  }
  const output = await driver.execute(() => document.querySelector("#output-status").textContent);
  console.log(`output: ${output}`);
  assert.match(output, /^(Playing through .+|No sound output found: playback is silent)$/);

  await driver.click("#play");
  await driver.waitFor(
    "playback to run",
    () => document.querySelector("#play").dataset.playing === "true" && Number(document.querySelector("#timeline").getAttribute("aria-valuenow")) > 0.2,
    10000,
  );
  const levels = () => [...document.querySelectorAll("li.stem")].map((r) => r.dataset.level).join(" ");
  assert.equal(await driver.execute(levels), "1.00 1.00 1.00 1.00");
  await driver.click('li.stem[data-stem="bass"] button.mute');
  await driver.waitFor("bass muted in the renderer", (want) => [...document.querySelectorAll("li.stem")].map((r) => r.dataset.level).join(" ") === want, 5000, "1.00 0.00 1.00 1.00");
  await driver.click('li.stem[data-stem="vocals"] button.solo');
  await driver.waitFor("vocals soloed in the renderer", (want) => [...document.querySelectorAll("li.stem")].map((r) => r.dataset.level).join(" ") === want, 5000, "0.00 0.00 0.00 1.00");
  await sleep(300);
  await saveShot("app-mixer");
  await driver.click("#play");
  await driver.waitFor("pause", () => document.querySelector("#play").dataset.playing === "false", 5000);

  // Practice: 80 % and two semitones down, as the renderer reports them, and the song's
  // measured facts in the header.
  const facts = await driver.execute(() => document.querySelector("#song-facts").textContent);
  console.log(`song facts: ${facts}`);
  assert.match(facts, /(BPM|no steady tempo) · .+ · /);
  await driver.execute(() => {
    const set = (id, value) => {
      const input = document.getElementById(id);
      input.value = value;
      input.dispatchEvent(new Event("input", { bubbles: true }));
    };
    set("tempo", "80");
    set("pitch", "-2");
  });
  await driver.click("#play");
  const reported = await driver.waitFor(
    "the renderer at 80 % and -2 semitones",
    () => {
      const m = document.querySelector("#mixer");
      return m.dataset.tempo === "0.80" && m.dataset.semitones === "-2.00" && document.querySelector("#play").dataset.playing === "true"
        ? { tempo: m.dataset.tempo, semitones: m.dataset.semitones }
        : null;
    },
    10000,
  );
  console.log(`renderer reports tempo ${reported.tempo}, ${reported.semitones} semitones`);
  const position = () => Number(document.querySelector("#timeline").getAttribute("aria-valuenow"));
  await sleep(500);
  const [p0, t0] = [await driver.execute(position), Date.now()];
  await sleep(4000);
  const [p1, t1] = [await driver.execute(position), Date.now()];
  const pace = (p1 - p0) / ((t1 - t0) / 1000);
  console.log(`at 80 %, the position moved ${(p1 - p0).toFixed(2)} s in ${((t1 - t0) / 1000).toFixed(2)} s: ${pace.toFixed(3)}x`);
  assert.ok(Math.abs(pace - 0.8) < 0.08, `the song advances at 0.8 of the wall clock, not ${pace.toFixed(3)}`);
  await saveShot("app-practice");
  await driver.click("#tempo-reset");
  await driver.click("#pitch-reset");
  await driver.click("#play");
  await driver.waitFor("pause", () => document.querySelector("#play").dataset.playing === "false", 5000);
});

test("a pasted link is downloaded, separated, titled, and served from the cache the second time", { timeout: 10 * 60 * 1000 }, async () => {
  const paste = (text) =>
    driver.execute((t) => {
      document.querySelector("#links").value = t;
      document.querySelector("#link-form button[type=submit]").click();
    }, text);
  await paste("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s");
  const downloading = await driver.waitFor(
    "the download stage",
    () => {
      const row = [...document.querySelectorAll("li.job")].find((r) => r.dataset.stage === "downloading");
      const pct = Number(row?.querySelector(".bar")?.getAttribute("aria-valuenow"));
      return row && pct >= 25 ? { pct, text: row.innerText } : null;
    },
    60000,
  );
  console.log(`downloading: ${downloading.text.replace(/\s+/g, " ")}`);
  assert.match(downloading.text, /Downloading \d+%/);
  assert.match(downloading.text, /YouTube https:\/\/www\.youtube\.com\/watch\?v=dQw4w9WgXcQ&t=42s/);
  await saveShot("app-link-download");

  const done = await driver.waitFor(
    "the linked song to finish",
    () => {
      const row = [...document.querySelectorAll("li.job")].find((r) => r.querySelector(".title")?.textContent === "E2E Video - Live Session");
      if (row?.dataset.stage === "failed") return { failed: row.innerText };
      return row?.dataset.stage === "done" ? { text: row.innerText } : null;
    },
    5 * 60 * 1000,
  );
  assert.equal(done.failed, undefined, `the link job failed: ${done.failed}`);
  console.log(`done: ${done.text.replace(/\s+/g, " ")}`);
  assert.doesNotMatch(done.text, /from cache/);

  await paste("dQw4w9WgXcQ");
  const cached = await driver.waitFor(
    "the second paste to come from the cache",
    () => {
      const rows = [...document.querySelectorAll("li.job")].filter((r) => r.querySelector(".title")?.textContent === "E2E Video - Live Session");
      const row = rows.find((r) => r.querySelector(".badge.cached"));
      return row?.dataset.stage === "done" ? row.innerText : null;
    },
    30000,
  );
  console.log(`cached: ${cached.replace(/\s+/g, " ")}`);
  assert.match(cached, /separated before with these settings/);
  const runs = readFileSync(path.join(work, "tools", "runs"), "utf8").trim().split("\n").length;
  assert.equal(runs, 1, "yt-dlp ran once");
  await saveShot("app-link-cached");
});

test("a song can be listened to while it separates, and plays on from its files when done", { timeout: 15 * 60 * 1000 }, async () => {
  const long = path.join(work, "E2E Long.wav");
  writeSong(long, 60);
  const dropped = Date.now();
  await driver.execute(
    (paths) => window.__TAURI_INTERNALS__.invoke("plugin:event|emit", { event: "tauri://drag-drop", payload: { paths, position: { x: 120, y: 120 } } }),
    [long],
  );
  const listen = await driver.waitFor(
    "“Listen now” on the separating job",
    () => {
      const row = [...document.querySelectorAll("li.job")].find((r) => r.querySelector(".title")?.textContent === "E2E Long");
      if (row?.dataset.stage === "done") return { done: true };
      const button = row?.querySelector("button.listen");
      if (!button) return null;
      button.click();
      return { done: false };
    },
    5 * 60 * 1000,
  );
  const listenAt = (Date.now() - dropped) / 1000;
  console.log(`“Listen now” offered and clicked ${listenAt.toFixed(1)} s after the drop`);
  assert.equal(listen.done, false, "the job finished before its first chunk could be heard; the song is too short for this machine");
  await driver.waitFor("the mixer on the separating job", () => !document.querySelector("#separating-status").hidden, 30000);
  await driver.click("#play");
  const position = () => Number(document.querySelector("#timeline").getAttribute("aria-valuenow"));
  const first = await driver.waitFor(
    "playback to advance while the job separates",
    () => {
      const row = [...document.querySelectorAll("li.job")].find((r) => r.querySelector(".title")?.textContent === "E2E Long");
      const pos = Number(document.querySelector("#timeline").getAttribute("aria-valuenow"));
      return pos > 0 ? { pos, stage: row?.dataset.stage } : null;
    },
    60000,
  );
  const firstAudio = (Date.now() - dropped) / 1000;
  console.log(`drop to first audio: ${firstAudio.toFixed(1)} s (playback at ${first.pos} s while the job was ${first.stage})`);
  assert.equal(first.stage, "separating", "the renderer advanced before the job was done");
  await sleep(1500);
  await saveShot("app-mixer-separating");

  // Ask for the end of the song: the seek stops at the separated edge, and playback waits there.
  await driver.execute(() => {
    const t = document.querySelector("#timeline");
    const r = t.getBoundingClientRect();
    const at = { clientX: r.left + r.width * 0.97, clientY: r.top + r.height / 2, pointerId: 1, bubbles: true };
    t.dispatchEvent(new PointerEvent("pointerdown", at));
    t.dispatchEvent(new PointerEvent("pointerup", at));
  });
  const waiting = await driver.waitFor(
    "playback to wait at the separated edge",
    () => {
      const label = document.querySelector(".waiting");
      return label && !label.hidden ? { toast: document.querySelector("#toast").textContent, pos: Number(document.querySelector("#timeline").getAttribute("aria-valuenow")) } : null;
    },
    30000,
  );
  console.log(`waiting at the edge, ${waiting.pos} s: ${waiting.toast}`);
  assert.match(waiting.toast, /is separated so far/);
  await saveShot("app-mixer-waiting");
  await driver.waitFor("playback to resume past the edge", (at) => {
    const label = document.querySelector(".waiting");
    return label.hidden && Number(document.querySelector("#timeline").getAttribute("aria-valuenow")) > at;
  }, 120000, waiting.pos);
  await driver.click("#zoom-in");
  await driver.click("#zoom-in");
  await sleep(800);
  const meters = await driver.execute(() => [...document.querySelectorAll("li.stem .meter")].map((m) => Number(m.getAttribute("aria-valuenow"))));
  console.log(`meters (peak) while playing: ${meters.map((v) => v.toFixed(3)).join(" ")}`);
  assert.ok(meters.some((v) => v > 0.01), "the meters move with the music");
  await saveShot("app-mixer-meters-zoom");

  // The job finishes; the same mixer plays on from the files, at the same place.
  let last = null;
  let switched = null;
  const deadline = Date.now() + 10 * 60 * 1000;
  while (!switched && Date.now() < deadline) {
    const now = await driver.execute(() => ({
      pos: Number(document.querySelector("#timeline").getAttribute("aria-valuenow")),
      separating: !document.querySelector("#separating-status").hidden,
      playing: document.querySelector("#play").dataset.playing === "true",
      mixer: document.querySelector("#mixer").dataset.jobId,
    }));
    if (last?.separating && !now.separating) switched = { before: last, after: now };
    last = now;
    if (now.separating && now.pos > 45) {
      // Playback at 1x can outrun a slow machine's separation to the song's end; go back
      // so that it is still playing when the job finishes.
      await driver.execute(() => {
        const t = document.querySelector("#timeline");
        const r = t.getBoundingClientRect();
        const at = { clientX: r.left + r.width * 0.02, clientY: r.top + r.height / 2, pointerId: 1, bubbles: true };
        t.dispatchEvent(new PointerEvent("pointerdown", at));
        t.dispatchEvent(new PointerEvent("pointerup", at));
      });
      last = null;
      await sleep(300);
    }
    await sleep(100);
  }
  assert.ok(switched, "the mixer switched to the finished files");
  console.log(`switched to the files at ${switched.before.pos} s → ${switched.after.pos} s`);
  assert.equal(switched.after.mixer, switched.before.mixer, "the same mixer stays open");
  const jump = switched.after.pos - switched.before.pos;
  assert.ok(jump >= 0 && jump < 0.6, `no gap and no jump in position (${jump.toFixed(3)} s)`);
  await sleep(1000);
  const later = await driver.execute(position);
  assert.ok(later > switched.after.pos, `playback goes on from the files (${later} s)`);
  await driver.click("#play");
});
