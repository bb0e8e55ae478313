//! How much memory the player holds for a long song: writes `--minutes` (default 60) of
//! four generated stereo stems as 16-bit WAV files, opens them in the player on the silent
//! clock, plays, seeks across the song and waits until the whole song has been read, and
//! prints the process's resident memory before and after against what holding the stems
//! as `f32` in memory (the previous player) would take.
//!
//! `cargo run --release -p stemdeck-engine --example player_memory -- --minutes 60 [--dir D]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stemdeck_engine::jobs::library::{Job, JobSource, JobStage};
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::pipeline::StemFile;
use stemdeck_engine::player::StemPlayer;

const RATE: u32 = 44_100;

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let mut minutes = 60u64;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => {
                minutes = args
                    .next()
                    .and_then(|m| m.parse().ok())
                    .expect("--minutes N")
            }
            "--dir" => dir = args.next().map(PathBuf::from),
            other => panic!("unknown argument {other}"),
        }
    }
    let scratch = tempfile::tempdir_in(dir.clone().unwrap_or_else(std::env::temp_dir))
        .expect("a work folder");
    let frames = minutes * 60 * RATE as u64;
    let names = ["drums", "bass", "other", "vocals"];
    let started = Instant::now();
    let mut stems = Vec::new();
    for (s, name) in names.iter().enumerate() {
        let path = scratch.path().join(format!("{name}.wav"));
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).expect("a WAV file");
        let freq = 110.0 * (s + 1) as f64;
        for i in 0..frames {
            let v = (0.3 * (i as f64 * freq * std::f64::consts::TAU / RATE as f64).sin() * 32767.0)
                as i16;
            writer.write_sample(v).unwrap();
            writer.write_sample(v).unwrap();
        }
        writer.finalize().unwrap();
        stems.push(StemFile {
            name: name.to_string(),
            path,
        });
    }
    println!(
        "wrote {minutes} min × {} stems in {:.0} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );

    // SAFETY: set before any thread that reads the environment starts.
    unsafe { std::env::set_var("STEMDECK_AUDIO_OUTPUT", "none") };
    let job = Job {
        id: 1,
        title: "Long".into(),
        source: JobSource::File {
            path: "long.wav".into(),
        },
        settings: JobSettings::default(),
        stage: JobStage::Done,
        error: None,
        can_retry: true,
        stems,
        output_dir: Some(scratch.path().to_owned()),
        created_at: 0,
        elapsed_secs: 0.0,
        from_cache: false,
        mix: None,
        analysis: None,
        missing_stems: Vec::new(),
        mixes: Vec::new(),
        timings: None,
        remote_run: None,
    };
    let before = rss_mib("VmRSS:");
    let opened = Instant::now();
    let mut player =
        StemPlayer::open(&job, &scratch.path().join("playback")).expect("the player opens");
    player.play().unwrap();
    let first = loop {
        let state = player.state();
        if state.position_secs > 0.0 {
            break opened.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let duration = player.state().duration_secs;
    let mut peak_while_playing: f64 = 0.0;
    while player.state().edge_secs < duration {
        // Seek around the part that exists, as a listener would.
        let edge = player.state().edge_secs;
        player.seek(edge * 0.9).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        peak_while_playing = peak_while_playing.max(rss_mib("VmRSS:"));
    }
    for fraction in [0.1, 0.5, 0.99] {
        player.seek(duration * fraction).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        peak_while_playing = peak_while_playing.max(rss_mib("VmRSS:"));
    }
    let read_all = opened.elapsed().as_secs_f64();
    let state = player.state();
    let after = rss_mib("VmRSS:");
    let in_memory = (frames * 2 * 4 * names.len() as u64) as f64 / (1 << 20) as f64;
    println!(
        "first audio {first:.3} s after opening; whole song read in {read_all:.0} s; playing at {:.1} s",
        state.position_secs
    );
    println!(
        "player memory: RSS {before:.0} MiB before opening, {peak_while_playing:.0} MiB at most while playing, {after:.0} MiB after ({:.0} MiB for the player); the stems as f32 in memory would be {in_memory:.0} MiB",
        peak_while_playing - before
    );
    println!(
        "peak RSS of the whole process: {:.0} MiB",
        rss_mib("VmHWM:")
    );
    drop(player);
}
