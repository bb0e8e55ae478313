// The UI alone, in headless Chromium, against the built app with the IPC mocked
// (mock-ipc.js): input, the queue's live progress, the mixer, shortcuts and settings.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "..", "dist");
const shots = process.env.STEMDECK_SCREENSHOTS ?? path.join(here, "..", "..", "artifacts", "screenshots");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png" };

let server;
let browser;
let page;
let url;
const consoleErrors = [];

before(async () => {
  assert.ok(existsSync(path.join(dist, "index.html")), "build the UI first: npm run build");
  await mkdir(shots, { recursive: true });
  server = createServer(async (req, res) => {
    const file = path.join(dist, decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/^\/$/, "/index.html"));
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${server.address().port}/`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.addInitScript({ path: path.join(here, "mock-ipc.js") });
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]");
});

after(async () => {
  await browser?.close();
  server?.close();
});

const calls = (cmd) => page.evaluate((c) => window.__mock.callsTo(c), cmd);

test("dropped files and folders are queued and unsupported ones are refused with the reason", async () => {
  assert.equal(await page.isVisible("#jobs-empty"), true);
  await page.evaluate(() => window.__mock.drop(["/music/Song.mp3", "/music/Album", "/music/notes.txt", "/music/notes.mp3"]));
  await page.waitForSelector("li.job >> nth=2");
  const titles = await page.$$eval("li.job .title", (els) => els.map((e) => e.textContent));
  assert.deepEqual(titles.sort(), ["01 Intro", "02 Song", "Song"]);
  assert.deepEqual((await calls("add_paths"))[0].args.paths, ["/music/Song.mp3", "/music/Album", "/music/notes.txt", "/music/notes.mp3"]);
  const refused = await page.textContent("#refused");
  assert.match(refused, /notes\.txt — not an audio file Stemdeck can read/);
  assert.match(refused, /notes\.mp3 — not an audio file Stemdeck can read/);
  assert.equal(await page.isHidden("#jobs-empty"), true);
});

test("a running job shows its stage, a smooth percent, the ETA and the elapsed time", async () => {
  await page.evaluate(() => window.__mock.jobUpdate({ id: 1, stage: "separating", progress: 0.42, eta_secs: 95, elapsed_secs: 61 }));
  const row = page.locator('li.job[data-job-id="1"]');
  await row.locator(".stage", { hasText: "Separating 42%" }).waitFor();
  assert.equal(await row.locator(".bar").getAttribute("aria-valuenow"), "42");
  assert.match(await row.locator(".meta").textContent(), /1 min 1 s elapsed · about 1 min 3\d s left/);
  await row.locator("button.cancel").click();
  assert.deepEqual((await calls("cancel_job")).map((c) => c.args.id), [1]);
  await page.evaluate(() => window.__mock.jobUpdate({ id: 2, stage: "loading_model", progress: 0.05, elapsed_secs: 2, download: [36_000_000, 84_141_911] }));
  await page.locator('li.job[data-job-id="2"] .stage', { hasText: "Downloading model 42%" }).waitFor();
  await page.evaluate(() => window.__mock.jobUpdate({ id: 2, stage: "failed", progress: 0, elapsed_secs: 3, error: "Song.mp3: the file is damaged" }));
  const failed = page.locator('li.job[data-job-id="2"]');
  await failed.locator(".job-error", { hasText: "the file is damaged" }).waitFor();
  await failed.locator("button.retry").click();
  assert.deepEqual((await calls("retry_job")).map((c) => c.args.id), [2]);
  // A failure a retry cannot help (the file is not audio) offers no Retry.
  await page.evaluate(() => window.__mock.jobUpdate({ id: 2, stage: "failed", progress: 0, elapsed_secs: 3, error: "Song.mp3: the file is truncated or damaged", can_retry: false }));
  await failed.locator(".job-error", { hasText: "truncated or damaged" }).waitFor();
  assert.equal(await failed.locator("button.retry").count(), 0);
  // A job Stemdeck stopped in the middle of says so, and can be run again.
  await page.evaluate(() => window.__mock.jobUpdate({ id: 3, stage: "interrupted", progress: 0, elapsed_secs: 0, error: "Interrupted: Stemdeck stopped before this job finished. Retry to run it again." }));
  const interrupted = page.locator('li.job[data-job-id="3"]');
  await interrupted.locator(".stage", { hasText: "Interrupted" }).waitFor();
  await interrupted.locator("button.retry").click();
  assert.deepEqual((await calls("retry_job")).map((c) => c.args.id), [2, 3]);
  await page.screenshot({ path: path.join(shots, "ui-queue.png") });
});

test("pasted links become jobs that show their download, their title and the cache", async () => {
  await page.fill("#links", "https://youtu.be/dQw4w9WgXcQ\nhttps://youtu.be/abcdefghijk https://vimeo.com/1");
  await page.click("#link-form button[type=submit]");
  await page.locator("li.job", { hasText: "https://youtu.be/abcdefghijk" }).waitFor();
  assert.equal((await calls("add_links"))[0].args.text, "https://youtu.be/dQw4w9WgXcQ\nhttps://youtu.be/abcdefghijk https://vimeo.com/1");
  assert.equal(await page.inputValue("#links"), "");
  assert.match(await page.textContent("#refused"), /vimeo\.com\/1 — links to vimeo\.com are not supported/);

  const id = await page.evaluate(() => window.__mock.jobs.find((j) => j.title === "https://youtu.be/dQw4w9WgXcQ").id);
  const row = page.locator(`li.job[data-job-id="${id}"]`);
  assert.equal(await row.locator(".source").textContent(), "YouTube https://youtu.be/dQw4w9WgXcQ");
  await page.evaluate((id) => window.__mock.jobUpdate({ id, stage: "downloading", progress: 0.35, elapsed_secs: 2, download: [1_200_000, 3_400_000] }), id);
  await row.locator(".stage", { hasText: "Downloading 35%" }).waitFor();
  assert.match(await row.locator(".meta").textContent(), /^1\.2 MB of 3\.4 MB · 2 s elapsed/);
  assert.equal(await row.locator(".bar").getAttribute("aria-valuenow"), "35");
  await page.screenshot({ path: path.join(shots, "ui-link-download.png") });

  // The download reveals the title; a video separated before comes back from the cache.
  await page.evaluate((id) => window.__mock.jobUpdate({ id, title: "Daft Punk - Around the World", stage: "separating", progress: 0.1, elapsed_secs: 4 }), id);
  await row.locator(".title", { hasText: "Daft Punk - Around the World" }).waitFor();
  await page.evaluate((id) => window.__mock.jobUpdate({ id, stage: "done", progress: 1, elapsed_secs: 0, from_cache: true }), id);
  await row.locator(".badge.cached", { hasText: "from cache" }).waitFor();
  assert.match(await row.locator(".meta").textContent(), /4 stems · separated before with these settings/);
});

test("a finished job opens in the mixer with waveforms, transport and shortcuts", async () => {
  await page.evaluate(() => window.__mock.jobUpdate({ id: 1, stage: "done", progress: 1, elapsed_secs: 80 }));
  const row = page.locator('li.job[data-job-id="1"]');
  await row.locator(".stage", { hasText: "Done" }).waitFor();
  await row.click();
  await page.waitForSelector("#mixer:not([hidden])");
  assert.equal(await page.textContent("#mixer-title"), "Song");
  assert.deepEqual(await page.$$eval("li.stem", (els) => els.map((e) => e.dataset.stem)), ["drums", "bass", "other", "vocals"]);
  assert.deepEqual(await page.$$eval("canvas.waveform", (els) => els.map((e) => e.dataset.drawn)), ["400", "400", "400", "400"]);
  // The waveform is really drawn: the canvas has coloured pixels.
  const lit = await page.$eval("canvas.waveform", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n / (d.length / 4);
  });
  assert.ok(lit > 0.05, `only ${lit} of the waveform is drawn`);
  assert.equal(await page.textContent("#output-status"), "No sound output found: playback is silent");
  // The system's own words are one click away, not in the banner.
  assert.equal(await page.isVisible("#output-details-text"), false);
  await page.click("#output-details summary");
  assert.match(await page.textContent("#output-details-text"), /cannot find card/);

  await page.keyboard.press("Space");
  assert.equal((await calls("play")).length, 1);
  await page.evaluate(() => window.__mock.playerTick({ job_id: 1, position_secs: 75.5, duration_secs: 213.4, playing: true, levels: [1, 1, 1, 1] }));
  assert.equal(await page.textContent("#time"), "1:15 / 3:33");
  assert.equal(await page.getAttribute("#play", "aria-label"), "Pause");
  const head = await page.$eval("#timeline-head", (e) => parseFloat(e.style.left));
  assert.ok(Math.abs(head - (75.5 / 213.4) * 100) < 0.01, `playhead at ${head}%`);
  await page.keyboard.press("Space");
  assert.equal((await calls("pause")).length, 1);

  await page.keyboard.press("m");
  await page.keyboard.press("2");
  assert.deepEqual((await calls("set_mute")).map((c) => c.args), [{ stem: 1, muted: true }]);
  assert.equal(await page.getAttribute('li.stem[data-stem="bass"] button.mute', "aria-pressed"), "true");
  await page.keyboard.press("s");
  await page.keyboard.press("3");
  assert.deepEqual((await calls("set_solo")).map((c) => c.args), [{ stem: 2, soloed: true }]);
  await page.click('li.stem[data-stem="vocals"] button.solo');
  assert.deepEqual((await calls("set_solo")).map((c) => c.args)[1], { stem: 3, soloed: true });
  await page.evaluate(() => window.__mock.playerTick({ job_id: 1, position_secs: 76, duration_secs: 213.4, playing: true, levels: [0, 0, 1, 1] }));
  assert.deepEqual(await page.$$eval("li.stem", (els) => els.map((e) => e.classList.contains("silent"))), [true, true, false, false]);

  const volume = page.locator('li.stem[data-stem="drums"] input.volume');
  await volume.fill("0.5");
  assert.deepEqual((await calls("set_gain")).at(-1).args, { stem: 0, gain: 0.5 });

  // Click seeks; a drag sets and enables a loop.
  const box = await page.locator("#timeline").boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  assert.ok(Math.abs((await calls("seek")).at(-1).args.secs - 106.7) < 1);
  await page.mouse.move(box.x + box.width * 0.25, box.y + 5);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.4, box.y + 5, { steps: 5 });
  await page.mouse.up();
  const loop = (await calls("set_loop")).at(-1).args;
  assert.ok(Math.abs(loop.start - 53.35) < 1 && Math.abs(loop.end - 85.36) < 1, JSON.stringify(loop));
  assert.equal(await page.getAttribute("#loop", "aria-pressed"), "true");
  await page.evaluate(() => window.__mock.playerTick({ job_id: 1, position_secs: 60, duration_secs: 213.4, playing: true, levels: [0, 0, 1, 1] }));
  await page.screenshot({ path: path.join(shots, "ui-mixer.png") });
  await page.click("#loop");
  assert.deepEqual((await calls("set_loop")).at(-1).args, { start: null, end: null });

  await page.click("#export-zip");
  assert.deepEqual((await calls("export_zip")).map((c) => c.args), [{ id: 1 }]);
  await page.click("#reveal");
  assert.deepEqual((await calls("reveal_job")).map((c) => c.args), [{ id: 1 }]);
});

test("settings show where yt-dlp is and let the user choose another", async () => {
  await page.click("#open-settings");
  await page.locator("#ytdlp-status", { hasText: "Found /usr/bin/yt-dlp." }).waitFor();
  await page.click("#choose-ytdlp");
  await page.waitForFunction(() => document.querySelector("#set-ytdlp").value === "/opt/yt-dlp/yt-dlp");
  await page.click("#settings-save");
  const saved = (await calls("save_settings")).at(-1).args.settings;
  assert.equal(saved.ytdlp_path, "/opt/yt-dlp/yt-dlp");
  await page.click("#open-settings");
  await page.click("#reset-ytdlp");
  assert.equal(await page.inputValue("#set-ytdlp"), "");
  assert.match(await page.textContent("#ytdlp-status"), /look for yt-dlp on PATH/);
  await page.click("#settings-save");
  assert.equal((await calls("save_settings")).at(-1).args.settings.ytdlp_path, null);
});

test("settings show model availability, download with progress, and refuse bad values", async () => {
  await page.click("#open-settings");
  await page.waitForSelector("#settings[open]");
  assert.equal(await page.textContent('li.model[data-model="htdemucs"] .model-state'), "ready");
  const missing = page.locator('li.model[data-model="htdemucs_6s"]');
  assert.equal(await missing.locator(".model-state").textContent(), "missing");
  assert.equal(await missing.locator(".model-facts").textContent(), "6 stems · size unknown until downloaded");
  await missing.locator("button.download").click();
  await page.waitForFunction(() => window.__mock.downloadAt43);
  await missing.locator(".model-state", { hasText: "downloading 43%" }).waitFor();
  await page.screenshot({ path: path.join(shots, "ui-settings.png") });
  await page.evaluate(() => window.__mock.finishDownload());
  await missing.locator(".model-state", { hasText: "ready" }).waitFor();
  // Its download size was unknown; now what it takes on disk is.
  assert.equal(await missing.locator(".model-facts").textContent(), "6 stems · 55 MB");

  await page.fill("#set-overlap", "1.5");
  await page.click("#settings-save");
  await page.locator("#settings-error", { hasText: "Overlap must be at least 0 and below 1" }).waitFor();
  await page.fill("#set-overlap", "0.5");
  await page.selectOption("#set-sample-format", "int24");
  // The speed choice says what this CPU supports.
  assert.equal(await page.inputValue("#set-precision"), "fast");
  assert.deepEqual(
    await page.$$eval("#set-precision option", (els) => els.map((e) => e.textContent)),
    ["Fast (recommended)", "Exact (bit-faithful to PyTorch)"],
  );
  assert.match(await page.textContent("#precision-hint"), /This CPU multiplies in bf16/);
  await page.selectOption("#set-precision", "exact");
  await page.click("#choose-output");
  await page.waitForFunction(() => document.querySelector("#set-output").value === "/media/usb/Stems");
  await page.click("#settings-save");
  await page.waitForSelector("#settings", { state: "hidden" });
  const saved = (await calls("save_settings")).at(-1).args.settings;
  assert.equal(saved.job.overlap, 0.5);
  assert.equal(saved.job.precision, "exact");
  assert.equal(saved.job.sample_format, "int24");
  assert.equal(saved.output_dir, "/media/usb/Stems");
});

const optionTexts = (selector) => page.$$eval(`${selector} option`, (els) => els.map((e) => e.textContent));
const lastSavedJob = async () => (await calls("save_settings")).at(-1).args.settings.job;

async function openSettings() {
  await page.click("#open-settings");
  await page.waitForSelector("#settings[open]");
}

async function saveSettings() {
  await page.click("#settings-save");
  await page.waitForSelector("#settings", { state: "hidden" });
}

test("the output format decides which of bit depth and bitrate show, and format, levels and stems are saved", async () => {
  await openSettings();
  assert.equal(await page.inputValue("#set-file-format"), "wav");
  assert.deepEqual(await optionTexts("#set-sample-format"), ["16-bit", "24-bit", "32-bit float"]);
  assert.equal(await page.inputValue("#set-sample-format"), "int24");
  assert.equal(await page.isVisible("#set-sample-format"), true);
  assert.equal(await page.isVisible("#set-mp3-kbps"), false);
  assert.equal(await page.isChecked("#levels-keep"), true);
  assert.equal(await page.inputValue("#set-peak-dbfs"), "-1");
  assert.deepEqual(await optionTexts("#set-stems"), ["All 4 stems", "Vocals / Instrumental"]);

  await page.selectOption("#set-file-format", "mp3");
  assert.equal(await page.isVisible("#set-sample-format"), false);
  assert.equal(await page.isVisible("#set-mp3-kbps"), true);
  assert.equal(await page.inputValue("#set-mp3-kbps"), "320");
  assert.deepEqual(await optionTexts("#set-mp3-kbps"), ["128 kbps", "160 kbps", "192 kbps", "224 kbps", "256 kbps", "320 kbps"]);
  await page.selectOption("#set-mp3-kbps", "192");
  await page.selectOption("#set-stems", "vocals");
  // Typing a level chooses normalising.
  await page.fill("#set-peak-dbfs", "-3");
  assert.equal(await page.isChecked("#levels-normalise"), true);
  await saveSettings();
  assert.deepEqual(await lastSavedJob(), {
    model: "htdemucs",
    device: "cpu",
    precision: "exact",
    overlap: 0.5,
    shifts: 0,
    format: "mp3",
    sample_format: "int24",
    mp3_kbps: 192,
    normalize_dbfs: -3,
    two_stems: "vocals",
  });

  // Opening again shows what was saved.
  await openSettings();
  assert.equal(await page.inputValue("#set-file-format"), "mp3");
  assert.equal(await page.inputValue("#set-mp3-kbps"), "192");
  assert.equal(await page.isVisible("#set-sample-format"), false);
  assert.equal(await page.inputValue("#set-stems"), "vocals");
  assert.equal(await page.isChecked("#levels-normalise"), true);
  assert.equal(await page.inputValue("#set-peak-dbfs"), "-3");

  await page.selectOption("#set-file-format", "wav");
  assert.equal(await page.isVisible("#set-mp3-kbps"), false);
  assert.equal(await page.inputValue("#set-sample-format"), "int24");
  await page.check("#levels-keep");
  await page.selectOption("#set-stems", "");
  await saveSettings();
  assert.deepEqual(await lastSavedJob(), {
    model: "htdemucs",
    device: "cpu",
    precision: "exact",
    overlap: 0.5,
    shifts: 0,
    format: "wav",
    sample_format: "int24",
    mp3_kbps: 192,
    normalize_dbfs: null,
    two_stems: null,
  });
});

test("FLAC offers only 16- and 24-bit, a float choice becomes 24-bit, and a peak level out of range is refused", async () => {
  await openSettings();
  await page.selectOption("#set-sample-format", "float32");
  await page.selectOption("#set-file-format", "flac");
  assert.deepEqual(await optionTexts("#set-sample-format"), ["16-bit", "24-bit"]);
  assert.equal(await page.inputValue("#set-sample-format"), "int24");
  assert.equal(await page.isVisible("#set-mp3-kbps"), false);

  const saves = (await calls("save_settings")).length;
  await page.fill("#set-peak-dbfs", "6");
  await page.click("#settings-save");
  await page.locator("#settings-error", { hasText: "Choose a peak level between -24 and 0 dBFS" }).waitFor();
  assert.equal((await calls("save_settings")).length, saves, "an impossible level never reaches Rust");
  await page.fill("#set-peak-dbfs", "");
  await page.click("#settings-save");
  assert.equal((await calls("save_settings")).length, saves, "an empty level is not read as 0 dBFS");
  await page.check("#levels-keep");
  await saveSettings();
  const saved = await lastSavedJob();
  assert.equal(saved.format, "flac");
  assert.equal(saved.sample_format, "int24");
  assert.equal(saved.normalize_dbfs, null);

  // Back to WAV, float is there again; through MP3 (no bit depth) to FLAC it becomes 24-bit.
  await openSettings();
  assert.equal(await page.inputValue("#set-sample-format"), "int24");
  await page.selectOption("#set-file-format", "wav");
  await page.selectOption("#set-sample-format", "float32");
  await page.selectOption("#set-file-format", "mp3");
  await page.selectOption("#set-file-format", "flac");
  assert.equal(await page.inputValue("#set-sample-format"), "int24");
  await page.selectOption("#set-file-format", "wav");
  await page.selectOption("#set-sample-format", "int16");
  await saveSettings();
  assert.equal((await lastSavedJob()).sample_format, "int16");
});

test("the model manager shows sizes, imports and slow models, removes after a confirmation and imports checkpoints", async () => {
  await openSettings();
  const row = (name) => page.locator(`li.model[data-model="${name}"]`);
  assert.equal(await row("htdemucs").locator(".model-facts").textContent(), "4 stems · 84 MB");
  assert.equal(await row("htdemucs_ft").locator(".model-facts").textContent(), "4 stems · 336 MB · about 4× the time");
  assert.equal(await row("htdemucs_ft").locator(".badge.imported").textContent(), "imported");
  assert.equal(await row("htdemucs").locator(".badge.imported").count(), 0);
  assert.deepEqual(await optionTexts("#set-model"), [
    "htdemucs — 4 stems",
    "htdemucs_6s — 6 stems",
    "htdemucs_ft — 4 stems, about 4× the time",
  ]);
  await page.selectOption("#set-model", "htdemucs_6s");
  assert.deepEqual(await optionTexts("#set-stems"), ["All 6 stems", "Vocals / Instrumental"]);

  // Remove asks first; No leaves the model alone.
  const six = row("htdemucs_6s");
  await six.locator("button.remove").click();
  assert.equal(await six.locator(".model-state").textContent(), "Remove?");
  assert.equal(await page.evaluate(() => document.activeElement.className), "cancel-remove");
  await six.locator("button.cancel-remove").click();
  assert.equal(await six.locator(".model-state").textContent(), "ready");
  assert.equal((await calls("remove_model")).length, 0);
  await six.locator("button.remove").click();
  await six.locator("button.confirm-remove").click();
  await six.locator(".model-state", { hasText: "missing" }).waitFor();
  assert.deepEqual((await calls("remove_model")).map((c) => c.args), [{ name: "htdemucs_6s" }]);
  assert.equal(await six.locator(".model-facts").textContent(), "6 stems · size unknown until downloaded");
  assert.equal(await six.locator("button.download").count(), 1);

  // A refused checkpoint says why, in the dialog.
  await page.evaluate(() => window.__mock.importAnswers.push({ error: "this is a 6-stem model; import it as htdemucs_6s" }));
  await page.click("#import-model");
  await page.locator("#models-message.error", { hasText: "Could not import the checkpoint: this is a 6-stem model; import it as htdemucs_6s" }).waitFor();
  await page.evaluate(() => window.__mock.importAnswers.push({ name: "htdemucs_6s", state: "ready", imported: true, disk_bytes: 55_000_000 }));
  await page.click("#import-model");
  await six.locator(".model-state", { hasText: "ready" }).waitFor();
  assert.equal(await six.locator(".badge.imported").textContent(), "imported");
  assert.equal(await six.locator(".model-facts").textContent(), "6 stems · 55 MB");
  assert.equal(await page.textContent("#models-message"), "Imported the checkpoint as htdemucs_6s.");
  assert.equal(await page.getAttribute("#models-message", "class"), "hint");
  await page.screenshot({ path: path.join(shots, "ui-settings-models.png") });
  // Cancelling the file dialog changes nothing.
  await page.click("#import-model");
  await page.waitForFunction(() => window.__mock.callsTo("import_model").length === 3);
  await page.waitForFunction(() => !document.querySelector("#import-model").disabled);
  assert.equal(await six.locator(".model-state").textContent(), "ready");
  await page.click("#settings-cancel");
});

test("a 6-stem job and a two-stem job open with their own stems, and Export mix says where the mix went", async () => {
  await openSettings();
  await page.selectOption("#set-model", "htdemucs_6s");
  await page.selectOption("#set-file-format", "flac");
  await saveSettings();
  await page.evaluate(() => window.__mock.drop(["/music/Six.wav"]));
  const sixId = await page.evaluate(async () => {
    while (!window.__mock.jobs.some((j) => j.title === "Six")) await new Promise((r) => setTimeout(r, 20));
    return window.__mock.jobs.find((j) => j.title === "Six").id;
  });
  await page.evaluate((id) => window.__mock.jobUpdate({ id, stage: "done", progress: 1, elapsed_secs: 42 }), sixId);
  const sixRow = page.locator(`li.job[data-job-id="${sixId}"]`);
  await sixRow.locator(".meta", { hasText: "6 stems · took 42 s" }).waitFor();
  await sixRow.click();
  await page.waitForFunction((id) => document.querySelector("#mixer").dataset.jobId === String(id), sixId);
  assert.deepEqual(await page.$$eval("li.stem", (els) => els.map((e) => e.dataset.stem)), ["drums", "bass", "other", "vocals", "guitar", "piano"]);
  assert.deepEqual(await page.$$eval("li.stem .stem-name", (els) => els.map((e) => e.textContent)), ["Drums", "Bass", "Other", "Vocals", "Guitar", "Piano"]);
  await page.keyboard.press("m");
  await page.keyboard.press("6");
  assert.deepEqual((await calls("set_mute")).at(-1).args, { stem: 5, muted: true });

  await page.click("#export-mix");
  await page.locator("#toast", { hasText: "Saved the mix to /stems/Six/Six (mix).flac" }).waitFor();
  assert.deepEqual((await calls("export_mix")).map((c) => c.args), [{}]);
  assert.equal(await page.isEnabled("#export-mix"), true);
  assert.equal(await page.textContent("#export-mix"), "Export mix…");

  await openSettings();
  await page.selectOption("#set-model", "htdemucs");
  await page.selectOption("#set-stems", "vocals");
  await saveSettings();
  await page.evaluate(() => window.__mock.drop(["/music/Duet.wav"]));
  const duetId = await page.evaluate(async () => {
    while (!window.__mock.jobs.some((j) => j.title === "Duet")) await new Promise((r) => setTimeout(r, 20));
    return window.__mock.jobs.find((j) => j.title === "Duet").id;
  });
  await page.evaluate((id) => window.__mock.jobUpdate({ id, stage: "done", progress: 1, elapsed_secs: 30 }), duetId);
  const duetRow = page.locator(`li.job[data-job-id="${duetId}"]`);
  await duetRow.locator(".meta", { hasText: "2 stems · took 30 s" }).waitFor();
  await duetRow.click();
  await page.waitForFunction((id) => document.querySelector("#mixer").dataset.jobId === String(id), duetId);
  assert.deepEqual(await page.$$eval("li.stem", (els) => els.map((e) => e.dataset.stem)), ["vocals", "no_vocals"]);
  assert.deepEqual(await page.$$eval("li.stem .stem-name", (els) => els.map((e) => e.textContent)), ["Vocals", "Instrumental"]);
  assert.equal(await page.getAttribute('li.stem[data-stem="no_vocals"] input.volume', "aria-label"), "Instrumental volume");
  await page.screenshot({ path: path.join(shots, "ui-mixer-two-stems.png") });
});

test("a separating job can be listened to: Listen now, the moving edge, waiting at it, a clamped seek, and the end of a cancel", async () => {
  await page.evaluate(() => window.__mock.drop(["/music/Live.wav"]));
  const id = await page.evaluate(async () => {
    while (!window.__mock.jobs.some((j) => j.title === "Live")) await new Promise((r) => setTimeout(r, 20));
    return window.__mock.jobs.find((j) => j.title === "Live").id;
  });
  const row = page.locator(`li.job[data-job-id="${id}"]`);
  await page.evaluate((id) => window.__mock.jobUpdate({ id, stage: "separating", progress: 0.1, elapsed_secs: 5, listenable: false }), id);
  await row.locator(".stage", { hasText: "Separating" }).waitFor();
  assert.equal(await row.locator("button.listen").count(), 0, "nothing to hear before the first chunk");
  await page.evaluate((id) => window.__mock.jobUpdate({ id, stage: "separating", progress: 0.12, elapsed_secs: 6, listenable: true }), id);
  await row.locator("button.listen", { hasText: "Listen now" }).click();
  await page.waitForFunction((id) => document.querySelector("#mixer").dataset.jobId === String(id), id);
  assert.equal(await page.isVisible("#separating-status"), true);
  assert.match(await page.textContent("#separating-status"), /^Separating… 0:12 of 3:33 ready to play$/);
  const edgeWidth = () => page.$eval("#timeline-edge", (e) => parseFloat(e.style.width));
  assert.ok(Math.abs((await edgeWidth()) - (1 - 12 / 213.4) * 100) < 0.1, `unseparated part ${await edgeWidth()}%`);
  const shade = () => page.$eval(".unseparated", (e) => parseFloat(e.style.width));
  const before = await shade();

  // The edge moves as chunks arrive, and the waveforms grow with it.
  await page.evaluate((id) => window.__mock.playerTick({ job_id: id, position_secs: 11.9, edge_secs: 40, separating: true, playing: true, overview_version: 4 }), id);
  assert.ok((await shade()) < before, "the unseparated shade shrinks");
  await page.waitForFunction(() => window.__mock.callsTo("player_stems").length > 0);
  assert.match(await page.textContent("#separating-status"), /0:40 of 3:33/);

  // At the edge playback waits, and says so at the playhead.
  await page.evaluate((id) => window.__mock.playerTick({ job_id: id, position_secs: 40, edge_secs: 40, separating: true, playing: true, waiting: true }), id);
  assert.equal(await page.isVisible(".waiting"), true);
  assert.equal(await page.textContent(".waiting"), "separating…");
  await page.screenshot({ path: path.join(shots, "ui-mixer-separating.png") });
  await page.evaluate((id) => window.__mock.playerTick({ job_id: id, position_secs: 41, edge_secs: 48, separating: true, playing: true }), id);
  assert.equal(await page.isVisible(".waiting"), false);

  // Seeking past the edge goes only as far as the edge, and says why.
  await page.evaluate(() => window.__mock.setEdge(48));
  const box = await page.locator("#timeline").boundingBox();
  await page.mouse.click(box.x + box.width * 0.9, box.y + box.height / 2);
  await page.locator("#toast", { hasText: "Only the first 0:48 is separated so far" }).waitFor();

  // Mute and solo work while it separates.
  // (This song was queued with two stems, vocals and the rest.)
  await page.click('li.stem[data-stem="vocals"] button.mute');
  assert.deepEqual((await calls("set_mute")).at(-1).args, { stem: 0, muted: true });

  // Cancelled: the mixer closes with the reason.
  await page.evaluate((id) => window.__mock.playerTick({ job_id: id, position_secs: 42, edge_secs: 48, separating: true, ended: "“Live” was cancelled, so none of it was kept" }), id);
  await page.waitForSelector("#mixer", { state: "hidden" });
  await page.locator("#toast", { hasText: "“Live” was cancelled, so none of it was kept" }).waitFor();
  assert.ok((await calls("close_player")).length > 0);
});

test("the mixer has meters, pan, zoom, presets of its own and the user's, drag-out and a shortcut list", async () => {
  const row = page.locator('li.job[data-job-id="1"]');
  await row.click();
  await page.waitForFunction(() => document.querySelector("#mixer").dataset.jobId === "1");
  // Meters follow the renderer: peak and RMS on a dB scale.
  await page.evaluate(() =>
    window.__mock.playerTick({ job_id: 1, position_secs: 30, playing: true, meters: [{ peak: 1, rms: 0.5 }, { peak: 0.1, rms: 0.05 }, { peak: 0, rms: 0 }, { peak: 0.5, rms: 0.25 }] }),
  );
  const meters = await page.$$eval("li.stem .meter", (els) => els.map((e) => ({ rms: parseFloat(e.querySelector(".rms").style.height), clip: e.classList.contains("clip") })));
  assert.ok(Math.abs(meters[0].rms - 90) < 0.5 && meters[0].clip, JSON.stringify(meters[0]));
  assert.ok(meters[1].rms < meters[3].rms && meters[3].rms < meters[0].rms && meters[2].rms === 0, JSON.stringify(meters));

  await page.locator('li.stem[data-stem="bass"] input.pan').fill("-0.5");
  assert.deepEqual((await calls("set_pan")).at(-1).args, { stem: 1, pan: -0.5 });
  await page.dblclick('li.stem[data-stem="bass"] input.pan');
  assert.deepEqual((await calls("set_pan")).at(-1).args, { stem: 1, pan: 0 });

  // Zoom with the buttons, the keyboard and the wheel; Fit shows the whole song again.
  await page.click("#zoom-in");
  assert.equal(await page.textContent("#zoom-level"), "2.0×");
  await page.keyboard.press("+");
  assert.equal(await page.textContent("#zoom-level"), "4.0×");
  const wave = await page.locator('li.stem[data-stem="drums"] .wave-box').boundingBox();
  await page.mouse.move(wave.x + wave.width / 2, wave.y + wave.height / 2);
  await page.mouse.wheel(0, -300);
  await page.waitForFunction(() => parseFloat(document.querySelector("#mixer").dataset.zoom) > 4);
  // The playhead is followed: once it plays past the view, the view pages on.
  await page.evaluate(() => window.__mock.playerTick({ job_id: 1, position_secs: 200, playing: true }));
  const head = await page.$eval('li.stem[data-stem="drums"] .playhead', (e) => parseFloat(e.style.left));
  assert.ok(head > 0 && head < 100, `the playhead is in view at ${head}%`);
  await page.screenshot({ path: path.join(shots, "ui-mixer-meters-zoom.png") });
  await page.click("#zoom-fit");
  assert.equal(await page.textContent("#zoom-level"), "Fit");

  // Built-in presets, then one of the user's own.
  assert.deepEqual(await optionTexts("#presets"), ["Choose a preset…", "Karaoke", "No drums", "Only vocals"]);
  await page.selectOption("#presets", "Karaoke");
  await page.waitForFunction(() => document.querySelector('li.stem[data-stem="vocals"] button.mute').getAttribute("aria-pressed") === "true");
  assert.deepEqual((await calls("apply_preset")).at(-1).args, { name: "Karaoke" });
  await page.click("#save-preset");
  await page.fill("#preset-name", "Bass practice");
  await page.click('#preset-form button[type="submit"]');
  await page.waitForFunction(() => [...document.querySelectorAll("#presets option")].some((o) => o.textContent === "Bass practice (yours)"));
  await page.selectOption("#presets", "Bass practice");
  assert.equal(await page.isVisible("#delete-preset"), true);
  await page.click("#delete-preset");
  await page.waitForFunction(() => ![...document.querySelectorAll("#presets option")].some((o) => o.textContent.startsWith("Bass practice")));

  // Drag-out: a stem's own file, or the mix rendered first, handed to the drag plugin.
  await page.dispatchEvent('li.stem[data-stem="bass"] .drag-stem', "mousedown", { button: 0 });
  await page.waitForFunction(() => window.__mock.callsTo("plugin:drag|start_drag").length === 1);
  assert.deepEqual((await calls("prepare_drag")).at(-1).args, { source: { stem: 1 } });
  assert.deepEqual((await calls("plugin:drag|start_drag")).at(-1).args.item, ["/stems/Song/bass.wav"]);
  await page.dispatchEvent("#drag-mix", "mousedown", { button: 0 });
  await page.waitForFunction(() => window.__mock.callsTo("plugin:drag|start_drag").length === 2);
  assert.deepEqual((await calls("prepare_drag")).at(-1).args, { source: "mix" });
  assert.match((await calls("plugin:drag|start_drag")).at(-1).args.image, /drag-icon\.png$/);

  // "?" opens the shortcut list.
  await page.keyboard.press("?");
  await page.waitForSelector("#help-dialog[open]");
  assert.match(await page.textContent("#help-dialog"), /Zoom the waveforms/);
  await page.click('#help-dialog button[type="submit"]');
  await page.waitForFunction(() => !document.querySelector("#help-dialog").open);
  await page.click("#help");
  await page.waitForSelector("#help-dialog[open]");
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !document.querySelector("#help-dialog").open);
});

test("practice: tempo, pitch with cents, click and count-in reach the renderer, and the header shows tempo, key and loudness", async () => {
  await page.locator('li.job[data-job-id="1"]').click();
  await page.waitForFunction(() => document.querySelector("#mixer").dataset.jobId === "1");
  assert.equal(await page.textContent("#song-facts"), "123.6 BPM · C minor · −9.4 LUFS · peak −0.6 dBTP");
  assert.equal(await page.textContent('li.stem[data-stem="drums"] .stem-lufs'), "−14.2 LUFS");
  const practice = async () => (await calls("set_practice")).at(-1).args.practice;

  await page.locator("#tempo").fill("80");
  assert.equal((await practice()).tempo, 0.8);
  assert.equal(await page.textContent("#tempo-value"), "80 %");
  await page.locator("#pitch").fill("-2");
  assert.equal((await practice()).semitones, -2);
  assert.equal(await page.textContent("#pitch-value"), "−2 st");
  await page.fill("#cents", "35");
  await page.dispatchEvent("#cents", "change");
  assert.equal((await practice()).semitones, -1.65);
  assert.equal(await page.textContent("#pitch-value"), "−1.65 st");
  await page.click("#pitch-reset");
  assert.equal((await practice()).semitones, 0);
  assert.equal((await practice()).tempo, 0.8, "resetting the pitch keeps the tempo");

  // Shortcuts: ] is 5 % faster, Shift+[ a semitone down; C toggles the click.
  await page.locator("#stems").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("]");
  assert.equal((await practice()).tempo, 0.85);
  await page.keyboard.press("Shift+BracketLeft");
  assert.equal((await practice()).semitones, -1);
  await page.keyboard.press("c");
  assert.equal((await practice()).click, true);
  assert.equal(await page.getAttribute("#click", "aria-pressed"), "true");
  await page.click("#count-in");
  assert.equal((await practice()).count_in, true);
  await page.locator("#click-volume").fill("0.8");
  assert.equal((await practice()).click_volume, 0.8);
  assert.equal(await page.textContent("#practice-note"), "", "the song's tempo is known, so the click can play");

  // What the renderer reports is what the mixer shows: a count-in, then 85 % at -1 st.
  await page.evaluate(() => window.__mock.playerTick({ job_id: 1, playing: true, counting_in: true, tempo: 0.85, semitones: -1, song_bpm: 123.6 }));
  assert.equal(await page.getAttribute("#mixer", "data-tempo"), "0.85");
  assert.ok(await page.$eval("#mixer", (m) => m.classList.contains("counting-in")));
  await page.screenshot({ path: path.join(shots, "ui-mixer-practice.png") });
  await page.evaluate(() => window.__mock.playerTick({ job_id: 1, playing: true, counting_in: false, tempo: 0.85, semitones: -1, song_bpm: 123.6 }));
  assert.ok(!(await page.$eval("#mixer", (m) => m.classList.contains("counting-in"))));
  await page.click("#tempo-reset");
  assert.equal((await practice()).tempo, 1);
  await page.dblclick("#pitch");
  assert.equal((await practice()).semitones, 0);
});

test("nothing went to the console as an error", () => {
  assert.deepEqual(consoleErrors, []);
});
