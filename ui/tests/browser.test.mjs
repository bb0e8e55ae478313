// The same UI in a browser, against a real `stemdeck serve`: headless Chromium picks and
// drops songs (uploaded to the server), follows a real separation over Server-Sent
// Events, plays the stems with Web Audio, mutes and solos them, exports the ZIP and the
// mix as downloads, and a server with a token turns a browser without it away.
//
// Run by scripts/test-app.sh after `cargo build -p stemdeck-cli`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { prepareModels, writeSong } from "../../tests/e2e/fixtures.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(root, "target");
const stemdeck = process.env.STEMDECK_BIN ?? path.join(targetDir, "debug", "stemdeck");
const shots = process.env.STEMDECK_SCREENSHOTS ?? path.join(root, "artifacts", "screenshots");
const shared = process.env.STEMDECK_SHARED_DIR ?? path.join(root, "..", "shared");
const realWeights = path.join(shared, "models", "htdemucs_955717e8_from_onnx.safetensors");

let work;
let browser;
const servers = [];

/// A real `stemdeck serve` on a free loopback port; resolves to its address once it
/// says where it listens.
function startServer(name, extraArgs = []) {
  const dir = path.join(work, name);
  mkdirSync(path.join(dir, "data"), { recursive: true });
  const child = spawn(stemdeck, ["serve", "--bind", "127.0.0.1:0", "--data-dir", path.join(dir, "data"), ...extraArgs], {
    env: {
      ...process.env,
      STEMDECK_MODEL_DIR: path.join(work, "models"),
      STEMDECK_CACHE_DIR: path.join(dir, "cache"),
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  servers.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = /serving on (http:\/\/\S+\/)/.exec(out);
      if (match) resolve({ url: match[1], dir, child });
    });
    child.on("exit", (code) => reject(new Error(`stemdeck serve exited (${code}) before listening:\n${out}`)));
  });
}

async function newPage(url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // A refused upload or a missing token is an HTTP error the page handles and shows; the
  // browser logs the status anyway.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && errors.push(m.text()));
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]");
  return { page, errors };
}

before(async () => {
  assert.ok(existsSync(stemdeck), `build the CLI first (cargo build -p stemdeck-cli): ${stemdeck} is missing`);
  mkdirSync(shots, { recursive: true });
  work = mkdtempSync(path.join(tmpdir(), "stemdeck-browser-"));
  const models = path.join(work, "models");
  mkdirSync(models);
  prepareModels(models, root, realWeights);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      // A musician's click on Play is the gesture; the test's clicks are synthetic.
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
});

after(async () => {
  await browser?.close();
  for (const child of servers) child.kill("SIGTERM");
  if (work) rmSync(work, { recursive: true, force: true });
});

test("a song picked in the browser is uploaded, separated live, and mixed and exported with Web Audio", { timeout: 10 * 60 * 1000 }, async () => {
  const server = await startServer("open");
  const song = path.join(work, "Browser Song.wav");
  writeSong(song, 8);
  const { page, errors } = await newPage(server.url);
  assert.equal(await page.getAttribute("body", "data-host"), "browser");
  assert.equal(await page.isVisible("#reveal"), false, "no “Show in folder” for a folder on the server");

  const chooser = page.waitForEvent("filechooser");
  await page.click("#add-files");
  await (await chooser).setFiles(song);
  const row = page.locator("li.job").first();
  await row.locator(".title", { hasText: "Browser Song" }).waitFor({ timeout: 30000 });

  // Live progress arrives over the events stream while the server separates.
  const seen = new Set();
  const started = Date.now();
  while (Date.now() - started < 8 * 60 * 1000) {
    const stage = await row.getAttribute("data-stage");
    seen.add(stage);
    if (stage === "separating" && !seen.has("shot")) {
      seen.add("shot");
      await page.screenshot({ path: path.join(shots, "browser-queue.png") });
    }
    if (stage === "done" || stage === "failed") break;
    await page.waitForTimeout(100);
  }
  const finished = await row.getAttribute("data-stage");
  assert.equal(finished, "done", `the job ended ${finished}: ${await row.innerText()}`);
  assert.ok(seen.has("separating"), `the stages went by live: ${[...seen].join(", ")}`);
  console.log(`stages seen live: ${[...seen].filter((s) => s !== "shot").join(" → ")}`);

  await row.click();
  await page.waitForSelector("#mixer:not([hidden]) li.stem");
  const stems = await page.$$eval("li.stem", (rows) => rows.map((r) => r.dataset.stem));
  assert.deepEqual(stems, ["drums", "bass", "other", "vocals"]);
  const drawn = await page.$$eval("canvas.waveform", (canvases) => canvases.map((c) => Number(c.dataset.drawn)));
  assert.deepEqual(drawn, [1600, 1600, 1600, 1600], "each waveform is drawn from the decoded stem");
  assert.match(await page.textContent("#output-status"), /this browser/);
  assert.equal(await page.isDisabled("#tempo"), true, "tempo is not faked in a browser");
  assert.match(await page.textContent("#practice-note"), /Stemdeck app/);

  await page.click("#play");
  await page.waitForFunction(() => Number(document.querySelector("#timeline").getAttribute("aria-valuenow")) > 1, null, { timeout: 20000 });
  // The meters read the audio the browser renders: the stems are heard.
  const peaks = await page
    .waitForFunction(
      () => {
        const peaks = [...document.querySelectorAll("li.stem .meter")].map((m) => Number(m.getAttribute("aria-valuenow")));
        return Math.max(...peaks) > 0.01 ? peaks : null;
      },
      null,
      { timeout: 10000 },
    )
    .then((handle) => handle.jsonValue());
  console.log(`meters (peak) while playing: ${peaks.map((p) => p.toFixed(3)).join(" ")}`);

  await page.click('li.stem[data-stem="drums"] button.mute');
  await page.waitForSelector('li.stem[data-stem="drums"][data-level="0.00"]');
  await page.click('li.stem[data-stem="vocals"] button.solo');
  await page.waitForFunction(() =>
    ["drums", "bass", "other"].every((s) => document.querySelector(`li.stem[data-stem="${s}"]`).dataset.level === "0.00"),
  );
  assert.equal(await page.getAttribute('li.stem[data-stem="vocals"]', "data-level"), "1.00");
  await page.screenshot({ path: path.join(shots, "browser-mixer.png") });
  await page.click('li.stem[data-stem="vocals"] button.solo');

  // A drag across the timeline loops that part: playback wraps inside it.
  const bar = await page.locator("#timeline").boundingBox();
  const at = (fraction) => bar.x + bar.width * fraction;
  await page.mouse.move(at(0.25), bar.y + bar.height / 2);
  await page.mouse.down();
  await page.mouse.move(at(0.4), bar.y + bar.height / 2, { steps: 4 });
  await page.mouse.move(at(0.5), bar.y + bar.height / 2, { steps: 4 });
  await page.mouse.up();
  await page.waitForSelector('#loop[aria-pressed="true"]');
  const position = () => page.$eval("#timeline", (t) => Number(t.getAttribute("aria-valuenow")));
  const heard = [];
  for (let i = 0; i < 35; i++) {
    heard.push(await position());
    await page.waitForTimeout(100);
  }
  const settled = heard.slice(5);
  assert.ok(settled.every((p) => p >= 1.9 && p <= 4.1), `inside the 2–4 s loop: ${settled.map((p) => p.toFixed(2)).join(" ")}`);
  assert.ok(settled.some((p, i) => i > 0 && p < settled[i - 1] - 1), `it wrapped: ${settled.map((p) => p.toFixed(2)).join(" ")}`);
  await page.click("#loop");
  await page.waitForSelector('#loop[aria-pressed="false"]');
  // A click seeks.
  await page.mouse.click(at(0.75), bar.y + bar.height / 2);
  await page.waitForFunction(() => Number(document.querySelector("#timeline").getAttribute("aria-valuenow")) >= 5.9, null, { timeout: 5000 });
  await page.click("#play");
  await page.waitForSelector('#play[data-playing="false"]');

  // Volume and pan reach the audio: everything hard left leaves the mix's right side silent.
  await page.$$eval("li.stem input.pan", (pans) =>
    pans.forEach((pan) => {
      pan.value = "-1";
      pan.dispatchEvent(new Event("input", { bubbles: true }));
    }),
  );
  await page.$eval('li.stem[data-stem="bass"] input.volume', (volume) => {
    volume.value = "0.5";
    volume.dispatchEvent(new Event("input", { bubbles: true }));
  });
  await page.waitForSelector('li.stem[data-stem="bass"][data-level="0.50"]');

  const zipDownload = page.waitForEvent("download");
  await page.click("#export-zip");
  const zip = await zipDownload;
  const zipFile = path.join(work, zip.suggestedFilename());
  await zip.saveAs(zipFile);
  assert.equal(zip.suggestedFilename(), "Browser Song.zip");
  const listing = execFileSync("unzip", ["-Z1", zipFile]).toString().trim().split("\n").sort();
  assert.deepEqual(
    listing.map((name) => name.replace(/\.(wav|flac|mp3)$/, "")),
    ["Browser Song/bass", "Browser Song/drums", "Browser Song/other", "Browser Song/vocals"],
  );

  const mixDownload = page.waitForEvent("download");
  await page.click("#export-mix");
  const mix = await mixDownload;
  const mixFile = path.join(work, "mix.wav");
  await mix.saveAs(mixFile);
  assert.equal(mix.suggestedFilename(), "Browser Song - mix.wav");
  // The mix as it sounded: drums muted. Its length is the song's.
  const seconds = Number(execFileSync("soxi", ["-D", mixFile]).toString());
  assert.ok(Math.abs(seconds - 8) < 0.05, `the mix is the whole song (${seconds} s)`);
  const peakOf = (channel) => {
    // `stat` reports on stderr.
    const stats = spawnSync("sox", [mixFile, "-n", "remix", String(channel), "stat"]).stderr.toString();
    return Number(/Maximum amplitude:\s+([\d.]+)/.exec(stats)[1]);
  };
  const [left, right] = [peakOf(1), peakOf(2)];
  console.log(`mix panned hard left: left peak ${left.toFixed(3)}, right peak ${right.toFixed(5)}`);
  assert.ok(left > 0.05 && right < 0.001, `panned hard left (left ${left}, right ${right})`);

  // A dropped file goes the same way as a picked one, and a file that is not audio is
  // refused with the server's reason. (Another song: the same one would be served from
  // the cache under its first title.)
  const dropped = path.join(work, "dropped.wav");
  writeSong(dropped, 5);
  const bytes = readFileSync(dropped).toString("base64");
  await page.evaluate((b64) => {
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([raw], "Dropped Song.wav", { type: "audio/wav" }));
    transfer.items.add(new File(["just words"], "notes.txt", { type: "text/plain" }));
    document.dispatchEvent(new DragEvent("dragenter", { dataTransfer: transfer, bubbles: true }));
    document.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, bytes);
  await page.locator("li.job .title", { hasText: "Dropped Song" }).waitFor({ timeout: 30000 });
  await page.locator("#refused", { hasText: "notes.txt" }).waitFor();
  assert.match(await page.textContent("#refused"), /^notes\.txt — not a file Stemdeck can separate/);
  console.log(`refused: ${(await page.textContent("#refused")).trim()}`);
  assert.ok(statSync(mixFile).size > 8 * 44100 * 4, "the mix has every frame");
  assert.deepEqual(errors, []);
});

test("a server with a token turns away a browser without it, and takes it from the address", async () => {
  const tokenFile = path.join(work, "token");
  writeFileSync(tokenFile, "correct-horse-battery-staple\n", { mode: 0o600 });
  const server = await startServer("locked", ["--token-file", tokenFile]);
  // Without it, the page asks; a wrong one is asked for again, the right one lets it in.
  const { page: without, errors: withoutErrors } = await newPage(server.url);
  await without.locator("#token-dialog[open]").waitFor();
  await without.screenshot({ path: path.join(shots, "browser-token-needed.png") });
  await without.fill("#token-input", "guess");
  await without.click("#token-form button[type=submit]");
  await without.waitForLoadState("load");
  await without.locator("#token-dialog[open]").waitFor();
  await without.fill("#token-input", "correct-horse-battery-staple");
  await without.click("#token-form button[type=submit]");
  await without.waitForSelector("body[data-ready=true]");
  await without.waitForFunction(() => !document.querySelector("#token-dialog").open);
  assert.equal(await without.isVisible("#jobs-empty"), true);
  assert.deepEqual(withoutErrors, []);

  const { page, errors } = await newPage(`${server.url}#token=correct-horse-battery-staple`);
  assert.equal(new URL(page.url()).hash, "", "the token leaves the address bar");
  assert.equal(await page.isVisible("#jobs-empty"), true);
  await page.click("#open-settings");
  await page.waitForSelector("#models li");
  assert.equal(await page.isVisible("#choose-output"), false, "the server's folders are not the browser's to choose");
  const models = await page.$$eval("#models li", (rows) => rows.length);
  assert.ok(models >= 1);
  assert.deepEqual(errors, []);
});
