//! Benchmark: does listening while a song separates slow the separation down?
//!
//! Runs the app's own job queue on a real song with the real htdemucs weights, alternately
//! with nobody listening and with a player following the job the way the app's mixer does:
//! opened on the live stems as soon as the job offers them, playing (through the sound
//! card, or on the silent clock where there is none), and asked for its state 30 times a
//! second, which lets it follow the job and switch to the finished files. Both kinds of
//! run poll the queue at the same 30 Hz, so the only difference is the player. Prints each
//! run's time from the drop to done, the best of each kind, and their ratio (target: at
//! most 1.10).
//!
//! ```sh
//! cargo run --release -p stemdeck-engine --example listen_while_separating -- \
//!     [--seconds 60] [--runs 2] [--clip PATH] [--weights PATH]
//! ```
//! The defaults are the shared Lithium mixture looped to 60 s and the shared weights
//! (`STEMDECK_SHARED_DIR`, or `../shared` beside the repository).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stemdeck_engine::ModelStore;
use stemdeck_engine::input::source::LinkSource;
use stemdeck_engine::jobs::library::{JobStage, Library};
use stemdeck_engine::jobs::queue::{JobQueue, QueueSources};
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::pipeline::cache::ResultCache;
use stemdeck_engine::player::StemPlayer;

/// The app's player tick (`src-tauri`'s `watch_player`).
const TICK: Duration = Duration::from_millis(33);

struct Args {
    seconds: usize,
    runs: usize,
    clip: PathBuf,
    weights: PathBuf,
}

fn args() -> Result<Args, String> {
    let shared = std::env::var_os("STEMDECK_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let mut args = Args {
        seconds: 60,
        runs: 2,
        clip: shared.join("testdata/everything_is_free/Lithium/mixture.wav"),
        weights: shared.join("models/htdemucs_955717e8_from_onnx.safetensors"),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} needs a positive whole number, not {value}"))
        };
        match flag.as_str() {
            "--seconds" => args.seconds = number()?,
            "--runs" => args.runs = number()?,
            "--clip" => args.clip = PathBuf::from(&value),
            "--weights" => args.weights = PathBuf::from(&value),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    for (what, path) in [("clip", &args.clip), ("weights", &args.weights)] {
        if !path.is_file() {
            return Err(format!(
                "the {what} {} is not there (set STEMDECK_SHARED_DIR, or pass --{what})",
                path.display()
            ));
        }
    }
    Ok(args)
}

/// The clip looped to `seconds`, as 16-bit stereo WAV.
fn looped_song(clip: &Path, seconds: usize, to: &Path) -> Result<(), String> {
    let mut reader =
        hound::WavReader::open(clip).map_err(|e| format!("{}: {e}", clip.display()))?;
    let spec = reader.spec();
    let samples: Vec<i32> = match spec.sample_format {
        hound::SampleFormat::Int => reader.samples::<i32>().collect::<Result<_, _>>(),
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.map(|v| (v * 32767.0) as i32))
            .collect::<Result<_, _>>(),
    }
    .map_err(|e| format!("{}: {e}", clip.display()))?;
    let channels = spec.channels as usize;
    let shift = spec.bits_per_sample.saturating_sub(16) as u32;
    let out_spec = hound::WavSpec {
        channels: 2,
        sample_rate: spec.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(to, out_spec).map_err(|e| e.to_string())?;
    let frames = samples.len() / channels.max(1);
    for i in 0..seconds * spec.sample_rate as usize {
        let frame = i % frames.max(1);
        for c in 0..2 {
            let v = samples[frame * channels + c.min(channels - 1)];
            let v = if spec.sample_format == hound::SampleFormat::Int {
                v >> shift
            } else {
                v
            };
            writer.write_sample(v as i16).map_err(|e| e.to_string())?;
        }
    }
    writer.finalize().map_err(|e| e.to_string())
}

/// One job from the drop to done, with or without a player following it; its wall time.
fn run_job(args: &Args, song: &Path, listen: bool) -> Result<Duration, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).map_err(|e| e.to_string())?;
    // The store names htdemucs' weights by their hash prefix; the shared copy stands in.
    std::os::unix::fs::symlink(&args.weights, models.join("955717e8.safetensors"))
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _inside = runtime.enter();
    let (library, _) = Library::open(&dir.path().join("data"));
    let queue = JobQueue::start(
        library,
        ModelStore::with_dirs(vec![models]),
        dir.path().join("out"),
        QueueSources {
            links: LinkSource::new(dir.path().join("cache/downloads"), Vec::new()),
            // A fresh cache each run: the song is separated every time.
            results: ResultCache::new(dir.path().join("cache/results.json")),
        },
    );
    let started = Instant::now();
    let job = queue
        .add_file(song, JobSettings::default())
        .map_err(|e| e.to_string())?;
    let mut player: Option<StemPlayer> = None;
    loop {
        std::thread::sleep(TICK);
        let now = queue.job(job.id).ok_or("the job vanished")?;
        match now.stage {
            JobStage::Done => break,
            JobStage::Failed | JobStage::Cancelled | JobStage::Interrupted => {
                return Err(format!("the job ended {:?}: {:?}", now.stage, now.error));
            }
            _ => {}
        }
        if !listen {
            continue;
        }
        match &mut player {
            Some(player) => {
                player.follow_job();
                let _ = player.state();
            }
            None => {
                if let Some(live) = queue.live(job.id) {
                    let scratch = dir.path().join("scratch");
                    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
                    let mut opened =
                        StemPlayer::open_live(&now, live, &scratch).map_err(|e| e.to_string())?;
                    opened.play().map_err(|e| e.to_string())?;
                    player = Some(opened);
                }
            }
        }
    }
    let took = started.elapsed();
    if listen && player.is_none() {
        return Err("the job never offered its stems to listen to".into());
    }
    drop(player);
    Ok(took)
}

fn main() -> std::process::ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("listen_while_separating: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let song = dir.path().join("song.wav");
    if let Err(message) = looped_song(&args.clip, args.seconds, &song) {
        eprintln!("listen_while_separating: {message}");
        return std::process::ExitCode::from(2);
    }
    let (mut alone, mut listened) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        for listen in [false, true] {
            match run_job(&args, &song, listen) {
                Ok(took) => {
                    println!(
                        "run {run}, {}: {:.2} s",
                        if listen {
                            "a player following"
                        } else {
                            "nobody listening"
                        },
                        took.as_secs_f64()
                    );
                    if listen { &mut listened } else { &mut alone }.push(took);
                }
                Err(message) => {
                    eprintln!("listen_while_separating: {message}");
                    return std::process::ExitCode::from(1);
                }
            }
        }
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default().as_secs_f64();
    let (a, l) = (best(&alone), best(&listened));
    println!(
        "{} s song, best of {}: nobody listening {a:.2} s, a player following {l:.2} s: \
         ratio {:.3} (target <= 1.10: {})",
        args.seconds,
        args.runs,
        l / a,
        if l / a <= 1.10 { "met" } else { "NOT met" }
    );
    std::process::ExitCode::SUCCESS
}
