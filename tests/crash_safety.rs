//! Crash safety, proven by killing: SIGKILL lands at random points of real jobs of the
//! CLI (while it downloads, decodes, separates, writes stems and writes the ZIP), of the
//! real app (jobs running from its queue, the library saved as they go), and of a process
//! saving the library in a loop. After every kill nothing under a final name is
//! incomplete, the result cache points only at complete files, the library reads and marks
//! the interrupted job, and the next start removes what the killed run left.
//!
//! Slow by design, so ignored in the normal run: `./scripts/crash-test.sh` runs it (50
//! kills each by default; `CRASH_KILLS`, `CRASH_SEED`, and `STEMDECK_APP_BIN` for the app).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use stemdeck_engine::jobs::library::{INTERRUPTED, JobSource, JobStage, Library};
use stemdeck_engine::jobs::settings::{AppSettings, JobSettings};

const SECONDS: f32 = 12.0;
const FRAMES: usize = (44100.0 * SECONDS) as usize;
const STEMS: [&str; 4] = ["drums", "bass", "other", "vocals"];

fn kills() -> usize {
    std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50)
}

/// A small xorshift generator; the seed is printed so that a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("CRASH_SEED={seed}");
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[lo, hi)` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Download,
    Decode,
    Separate,
    Write,
    Zip,
}

const PHASES: [Phase; 5] = [
    Phase::Download,
    Phase::Decode,
    Phase::Separate,
    Phase::Write,
    Phase::Zip,
];

fn names(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default()
}

/// What a running `stemdeck` is doing, told by its working files.
fn phase_now(out: &Path, downloads: &Path) -> Option<Phase> {
    if names(downloads)
        .iter()
        .any(|(n, _)| n.starts_with(".partial-"))
    {
        return Some(Phase::Download);
    }
    let top = names(out);
    if top
        .iter()
        .any(|(n, _)| n.contains(".zip.") && n.ends_with(".partial"))
    {
        return Some(Phase::Zip);
    }
    for (_, song) in top
        .iter()
        .filter(|(n, p)| !n.starts_with('.') && p.is_dir())
    {
        for (name, path) in names(song) {
            if name.starts_with(".stemdeck-") && path.is_dir() {
                let spilled = names(&path);
                return Some(if spilled.iter().any(|(n, _)| n.starts_with("stem")) {
                    Phase::Separate
                } else {
                    Phase::Decode
                });
            }
            if name.ends_with(".partial") {
                return Some(Phase::Write);
            }
        }
    }
    None
}

/// Every file and folder under `dir` whose name marks it as work in progress.
fn partials(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for (name, path) in names(&d) {
            if name.ends_with(".partial") || name.starts_with(".partial-") {
                found.push(path);
            } else if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

/// Why a WAV under a final name is not a complete stem, if it is not.
fn wav_problem(path: &Path, frames: usize) -> Option<String> {
    let reader = match hound::WavReader::open(path) {
        Ok(r) => r,
        Err(e) => return Some(format!("{}: unreadable WAV ({e})", path.display())),
    };
    let spec = reader.spec();
    let have = reader.duration() as usize;
    let samples = reader.into_samples::<i16>().filter(Result::is_ok).count();
    (spec.sample_rate != 44100 || have != frames || samples != frames * spec.channels as usize)
        .then(|| {
            format!(
                "{}: {have} frames, {samples} samples readable, expected {frames}",
                path.display()
            )
        })
}

fn zip_problem(path: &Path, frames: usize) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut archive = match zip::ZipArchive::new(file) {
        Ok(a) => a,
        Err(e) => return Some(format!("{}: not a complete ZIP ({e})", path.display())),
    };
    if archive.len() != STEMS.len() {
        return Some(format!("{}: {} entries", path.display(), archive.len()));
    }
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let out = tmp.path().join(format!("{i}.wav"));
        let mut bytes = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut entry, &mut bytes) {
            return Some(format!("{}: entry {i} unreadable ({e})", path.display()));
        }
        std::fs::write(&out, bytes).unwrap();
        if let Some(p) = wav_problem(&out, frames) {
            return Some(format!("{} entry {i}: {p}", path.display()));
        }
    }
    None
}

/// Every file under a final name in `out` that is not complete.
fn incomplete_files(out: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for (name, path) in names(&d) {
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".wav") {
                problems.extend(wav_problem(&path, FRAMES));
            } else if name.ends_with(".zip") {
                problems.extend(zip_problem(&path, FRAMES));
            }
        }
    }
    problems
}

/// Every stem the result cache lists must be a complete file.
fn cache_problems(index: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(index) else {
        return Vec::new();
    };
    let index: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return vec![format!("the result cache index is unreadable: {e}")],
    };
    let mut problems = Vec::new();
    for entry in index["entries"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        for stem in entry["stems"].as_array().into_iter().flatten() {
            let path = PathBuf::from(stem["path"].as_str().unwrap());
            if path.is_file() {
                problems.extend(wav_problem(&path, FRAMES).map(|p| format!("cache points at {p}")));
            }
        }
    }
    problems
}

fn song(path: &Path, variant: usize) {
    let mut audio = test_song(44100, SECONDS);
    // A different song each time (a few LSBs of the first sample), so that no run is
    // answered from the cache.
    audio[0][0] = variant as f32 * 1.0e-4;
    write_wav(path, 44100, &audio);
}

struct Cli {
    dir: PathBuf,
    out: PathBuf,
    cache: PathBuf,
    tools: PathBuf,
}

impl Cli {
    fn new(dir: &Path) -> Self {
        let tools = dir.join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-yt-dlp.sh");
        std::fs::copy(script, tools.join("yt-dlp")).unwrap();
        let audio = dir.join("download.wav");
        song(&audio, 999);
        std::fs::write(
            tools.join("fake-yt-dlp.conf"),
            format!(
                "MODE=slow\nDELAY=0.15\nAUDIO='{}'\nTITLE='Linked Song'\n",
                audio.display()
            ),
        )
        .unwrap();
        Self {
            dir: dir.to_owned(),
            out: dir.join("out"),
            cache: dir.join("cache"),
            tools,
        }
    }

    fn command(&self, input: &str) -> Command {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
        drop(closed);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stemdeck"));
        cmd.args(["separate", "--zip", "--weights"])
            .arg(tiny_weights())
            .arg("-o")
            .arg(&self.out)
            .arg(input)
            .env("STEMDECK_MODEL_DIR", self.dir.join("no-models"))
            .env("STEMDECK_CACHE_DIR", &self.cache)
            .env("PATH", format!("{}:/usr/bin:/bin", self.tools.display()))
            .env("HTTPS_PROXY", &proxy)
            .env("https_proxy", &proxy)
            .env("ALL_PROXY", &proxy)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn downloads(&self) -> PathBuf {
        self.cache.join("downloads")
    }
}

/// Kills `child` once `phase` shows (plus a random moment into it); returns the phase it
/// was in when the signal went, or `None` when it finished first.
fn kill_during(
    child: &mut Child,
    rng: &mut Rng,
    phase: Phase,
    seen: impl Fn() -> Option<Phase>,
) -> Option<Phase> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if seen() == Some(phase) {
            std::thread::sleep(rng.millis(0, 40));
            let at = seen();
            child.kill().unwrap();
            child.wait().unwrap();
            return at.or(Some(phase));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("{phase:?} never showed within two minutes");
}

#[test]
#[ignore = "kills real jobs for minutes: ./scripts/crash-test.sh"]
fn cli_killed_at_random_points_leaves_only_complete_files() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(dir.path());
    let mut rng = Rng::seeded();
    let mut landed = std::collections::HashMap::new();
    let (mut swept, mut problems, mut missed) = (0, Vec::new(), 0);
    let total = kills();
    for k in 0..total {
        let phase = PHASES[k % PHASES.len()];
        let input = if phase == Phase::Download {
            format!("https://youtu.be/crash{k:06}")
        } else {
            let path = dir.path().join(format!("songs/song {k}.wav"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            song(&path, k);
            path.display().to_string()
        };
        let mut child = cli.command(&input).spawn().unwrap();
        let at = kill_during(&mut child, &mut rng, phase, || {
            phase_now(&cli.out, &cli.downloads())
        });
        let Some(at) = at else {
            missed += 1;
            continue;
        };
        *landed.entry(at).or_insert(0) += 1;
        for p in incomplete_files(&cli.out)
            .into_iter()
            .chain(cache_problems(&cli.cache.join("results.json")))
        {
            problems.push(format!("kill {k} during {at:?}: {p}"));
        }
        let left = partials(dir.path());

        // The next start: the same input runs to the end and sweeps what the kill left.
        let rerun = cli.command(&input).output().unwrap();
        if !rerun.status.success() {
            problems.push(format!(
                "kill {k}: the next run failed: {}",
                String::from_utf8_lossy(&rerun.stderr)
            ));
        }
        let still: Vec<_> = left.iter().filter(|p| p.exists()).collect();
        if !still.is_empty() {
            problems.push(format!("kill {k}: the next run left {still:?}"));
        }
        swept += left.len();
        let after = partials(dir.path());
        if !after.is_empty() {
            problems.push(format!(
                "kill {k}: working files after a finished run: {after:?}"
            ));
        }
        for p in incomplete_files(&cli.out) {
            problems.push(format!("kill {k}, after the rerun: {p}"));
        }
        println!(
            "kill {k:2} during {at:?}: {} working files left, cleared by the next run",
            left.len()
        );
    }
    println!(
        "CLI: {} kills ({missed} finished before the kill), by phase {landed:?}; {swept} leftovers swept; {} problems",
        total - missed,
        problems.len()
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(missed * 5 < total, "most kills must land");
}

/// Saves a growing library as fast as it can until it is killed (run by the test below
/// as a child process).
#[test]
#[ignore = "a child of library_saves_survive_sigkill"]
fn child_saves_library_until_killed() {
    let Some(dir) = std::env::var_os("CRASH_LIBRARY_DIR") else {
        return;
    };
    let (mut library, _) = Library::open(Path::new(&dir));
    loop {
        let n = library.jobs().len();
        library.add(
            format!(
                "Song {n} with a long title to make the file bigger {}",
                "x".repeat(200)
            ),
            JobSource::File {
                path: format!("/music/{n}.flac").into(),
            },
            JobSettings::default(),
        );
        library.save().unwrap();
    }
}

#[test]
#[ignore = "kills a process for minutes: ./scripts/crash-test.sh"]
fn library_saves_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded();
    let mut last = 0;
    let mut problems = Vec::new();
    for k in 0..kills() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_saves_library_until_killed",
                "--nocapture",
            ])
            .env("CRASH_LIBRARY_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(rng.millis(30, 400));
        child.kill().unwrap();
        child.wait().unwrap();
        let raw = std::fs::read(dir.path().join(Library::FILE_NAME)).unwrap_or_default();
        match serde_json::from_slice::<serde_json::Value>(&raw) {
            Ok(v) => {
                let n = v["jobs"].as_array().map_or(0, Vec::len);
                if n < last {
                    problems.push(format!(
                        "kill {k}: the library went back from {last} to {n} jobs"
                    ));
                }
                last = n;
            }
            Err(e) if raw.is_empty() && k == 0 => {
                println!("kill 0 came before the first save ({e})")
            }
            Err(e) => problems.push(format!("kill {k}: library.json unreadable: {e}")),
        }
        let (library, warning) = Library::open(dir.path());
        if let Some(w) = warning {
            problems.push(format!("kill {k}: {w}"));
        }
        assert_eq!(library.jobs().len(), last);
        stemdeck_engine::pipeline::leftovers::sweep(dir.path(), 0);
        if !partials(dir.path()).is_empty() {
            problems.push(format!("kill {k}: a half-written library was not swept"));
        }
    }
    println!(
        "library: {} kills, {last} jobs saved, {} problems",
        kills(),
        problems.len()
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The real app, started on a virtual display, its queue running the jobs of a library
/// prepared for it.
struct App {
    bin: PathBuf,
    data: PathBuf,
    out: PathBuf,
    models: PathBuf,
}

impl App {
    fn add_songs(&self, count: usize, first: usize) {
        let (mut library, _) = Library::open(&self.data);
        for i in first..first + count {
            let path = self
                .data
                .parent()
                .unwrap()
                .join(format!("songs/app song {i}.wav"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            song(&path, 500 + i);
            library.add(
                format!("app song {i}"),
                JobSource::File { path },
                JobSettings::default(),
            );
        }
        library.save().unwrap();
    }

    fn start(&self) -> Child {
        Command::new(&self.bin)
            .env("STEMDECK_DATA_DIR", &self.data)
            .env("STEMDECK_MODEL_DIR", &self.models)
            .env("STEMDECK_AUDIO_OUTPUT", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

#[test]
#[ignore = "kills the real app for minutes: ./scripts/crash-test.sh (needs STEMDECK_APP_BIN and a display)"]
fn app_killed_at_random_points_keeps_a_consistent_library() {
    let bin = PathBuf::from(
        std::env::var_os("STEMDECK_APP_BIN").expect("STEMDECK_APP_BIN: the built app"),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = App {
        bin,
        data: dir.path().join("data"),
        out: dir.path().join("Stems"),
        models: dir.path().join("models"),
    };
    std::fs::create_dir_all(&app.models).unwrap();
    std::fs::copy(tiny_th_weights(), app.models.join("955717e8-8726e21a.th")).unwrap();
    std::fs::create_dir_all(&app.data).unwrap();
    let settings = AppSettings {
        output_dir: Some(app.out.clone()),
        ..Default::default()
    };
    settings.save(&app.data).unwrap();
    let mut rng = Rng::seeded();
    let mut added = 0;
    let (mut interrupted, mut done, mut swept, mut moved) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    let mut left_before: Vec<PathBuf> = Vec::new();
    for k in 0..kills() {
        {
            let (library, _) = Library::open(&app.data);
            let queued = library
                .jobs()
                .iter()
                .filter(|j| j.stage == JobStage::Queued)
                .count();
            if queued < 2 {
                drop(library);
                app.add_songs(3, added);
                added += 3;
            }
        }
        // Now and then the user moves a finished song's stem away while the app is closed.
        if k % 10 == 5 {
            let (library, _) = Library::open(&app.data);
            if let Some(stem) = library
                .jobs()
                .iter()
                .filter(|j| j.stage == JobStage::Done)
                .flat_map(|j| j.stems.first())
                .find(|s| s.path.is_file())
            {
                std::fs::rename(&stem.path, dir.path().join(format!("moved-{k}.wav"))).unwrap();
                moved += 1;
            }
        }
        let mut child = app.start();
        let wait = rng.millis(1500, 9000);
        let started = Instant::now();
        let mut exited = None;
        while started.elapsed() < wait {
            if let Some(status) = child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(status) = exited {
            problems.push(format!("kill {k}: the app exited by itself ({status})"));
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        // What the last kill left was removed when this run started.
        let kept: Vec<_> = left_before.iter().filter(|p| p.exists()).collect();
        if !kept.is_empty() {
            problems.push(format!("kill {k}: the start did not clear {kept:?}"));
        }
        swept += left_before.len();

        let raw = std::fs::read(app.data.join(Library::FILE_NAME)).unwrap();
        let stored: serde_json::Value = match serde_json::from_slice(&raw) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("kill {k}: library.json unreadable: {e}"));
                continue;
            }
        };
        let running: Vec<u64> = stored["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                !["queued", "done", "failed", "cancelled", "interrupted"]
                    .contains(&j["stage"].as_str().unwrap())
            })
            .map(|j| j["id"].as_u64().unwrap())
            .collect();
        // The next start reads the library as the app does.
        let (library, warning) = Library::open(&app.data);
        if let Some(w) = warning {
            problems.push(format!("kill {k}: {w}"));
        }
        for id in &running {
            let job = library.get(*id).unwrap();
            if job.stage != JobStage::Interrupted
                || job.error.as_deref() != Some(INTERRUPTED)
                || !job.can_retry
            {
                problems.push(format!(
                    "kill {k}: job {id} was running and is now {:?}",
                    job.stage
                ));
            }
        }
        interrupted += running.len();
        for job in library.jobs().iter().filter(|j| j.stage == JobStage::Done) {
            let mut job = job.clone();
            job.check_stems();
            for stem in job.stems.iter().filter(|s| s.path.is_file()) {
                problems.extend(
                    wav_problem(&stem.path, FRAMES)
                        .map(|p| format!("kill {k}: done job {}: {p}", job.id)),
                );
            }
        }
        done = library
            .jobs()
            .iter()
            .filter(|j| j.stage == JobStage::Done)
            .count();
        for p in incomplete_files(&app.out) {
            problems.push(format!("kill {k}: {p}"));
        }
        problems.extend(
            cache_problems(&app.data.join("results.json"))
                .into_iter()
                .map(|p| format!("kill {k}: {p}")),
        );
        left_before = partials(&app.out)
            .into_iter()
            .chain(partials(&app.data))
            .collect();
        println!(
            "kill {k:2} after {:.1} s: {} running job(s) interrupted, {} working files left, {done} done",
            wait.as_secs_f64(),
            running.len(),
            left_before.len()
        );
    }
    // The library lists the stems the user moved away as missing, and nothing crashed.
    let (library, _) = Library::open(&app.data);
    let missing = library
        .jobs()
        .iter()
        .map(|j| {
            let mut j = j.clone();
            j.check_stems();
            j.missing_stems.len()
        })
        .sum::<usize>();
    println!(
        "app: {} kills, {interrupted} jobs interrupted and marked, {done} done, {swept} leftovers swept, {moved} stems moved away and {missing} listed missing; {} problems",
        kills(),
        problems.len()
    );
    assert_eq!(missing, moved, "every stem moved away is listed as missing");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(
        interrupted > 0 && done > 0,
        "kills must land both during jobs and after some"
    );
}
