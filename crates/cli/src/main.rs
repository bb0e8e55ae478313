//! `stemdeck`: split songs into stems from the terminal.
//!
//! Exit codes: 0 all inputs separated; 1 at least one input failed (the others were still
//! separated); 2 bad command line; 3 the model could not be loaded; 130 cancelled.

mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand, ValueEnum};
use stemdeck_engine::{
    ApplyOptions, ClipMode, DeviceChoice, EngineError, JobListener, ModelChoice, ModelStore,
    OutputOptions, Separator, WavFormat,
};

use crate::progress::TerminalProgress;

#[derive(Parser)]
#[command(
    name = "stemdeck",
    version,
    about = "Split songs into stems (drums, bass, other, vocals) on your own machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Separate audio files into stems.
    Separate(SeparateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
    Metal,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClipArg {
    Rescale,
    Clamp,
}

#[derive(clap::Args)]
struct SeparateArgs {
    /// Audio files to separate (WAV, FLAC, MP3, Ogg Vorbis, M4A/MP4 AAC or ALAC, ADTS AAC).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Folder for the stems; each input gets <OUT>/<file name>/<stem>.wav.
    #[arg(short, long, default_value = "separated")]
    out: PathBuf,
    /// Model: htdemucs (4 stems), htdemucs_6s (6 stems), htdemucs_ft (4 stems, best, ~4x slower).
    #[arg(short, long, default_value = "htdemucs")]
    model: String,
    /// A .safetensors or official .th checkpoint to use instead of the model store.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Segment length in seconds (at most the model's 7.8 s).
    #[arg(long, value_name = "SECONDS")]
    segment: Option<f64>,
    /// Overlap between segments, from 0 to below 1.
    #[arg(long, default_value_t = 0.25)]
    overlap: f64,
    /// Average this many random time shifts (better quality, N times slower; 0 is deterministic).
    #[arg(long, default_value_t = 0)]
    shifts: usize,
    /// How to keep stems from clipping.
    #[arg(long, value_enum, default_value = "rescale")]
    clip_mode: ClipArg,
    /// Write SOURCE and no_SOURCE (everything else) only, e.g. --two-stems vocals for karaoke.
    #[arg(long, value_name = "SOURCE")]
    two_stems: Option<String>,
    /// Write 24-bit WAV (default 16-bit).
    #[arg(long, conflicts_with = "float32")]
    int24: bool,
    /// Write 32-bit float WAV (default 16-bit).
    #[arg(long)]
    float32: bool,
    /// Number of CPU threads (default: all cores).
    #[arg(short, long, value_name = "THREADS")]
    jobs: Option<usize>,
}

struct CliListener {
    progress: TerminalProgress,
    cancelled: Arc<AtomicBool>,
}

impl JobListener for CliListener {
    fn on_event(&self, event: stemdeck_engine::JobEvent) {
        self.progress.on_event(event);
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Separate(args) => separate(args),
    }
}

fn separate(args: SeparateArgs) -> ExitCode {
    if let Some(threads) = args.jobs {
        if threads == 0 {
            eprintln!("error: --jobs must be at least 1");
            return ExitCode::from(2);
        }
        // Candle's CPU kernels size their thread pools from this variable; set it before
        // any of them starts.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    if !(0.0..1.0).contains(&args.overlap) {
        eprintln!(
            "error: --overlap must be at least 0 and below 1, got {}",
            args.overlap
        );
        return ExitCode::from(2);
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        let _ = ctrlc::set_handler(move || cancelled.store(true, Ordering::Relaxed));
    }
    let listener = CliListener {
        progress: TerminalProgress::new(),
        cancelled,
    };

    let choice = match &args.weights {
        Some(path) => ModelChoice::Weights(path.clone()),
        None => ModelChoice::Named(args.model.clone()),
    };
    let device = match args.device {
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Cuda => DeviceChoice::Cuda,
        DeviceArg::Metal => DeviceChoice::Metal,
    };
    let separator = match Separator::load(&choice, device, &ModelStore::from_env(), &listener) {
        Ok(s) => s,
        Err(EngineError::Cancelled) => return cancelled_exit(&listener),
        Err(e) => {
            listener.progress.clear();
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let apply = ApplyOptions {
        segment: args.segment,
        overlap: args.overlap,
        shifts: args.shifts,
        ..Default::default()
    };
    let output = OutputOptions {
        wav_format: if args.int24 {
            WavFormat::Int24
        } else if args.float32 {
            WavFormat::Float32
        } else {
            WavFormat::Int16
        },
        clip: match args.clip_mode {
            ClipArg::Rescale => ClipMode::Rescale,
            ClipArg::Clamp => ClipMode::Clamp,
        },
        two_stems: args.two_stems.clone(),
    };

    let out_existed = args.out.exists();
    let mut failures = 0;
    for input in &args.inputs {
        match separator.separate_file(input, &args.out, &apply, &output, &listener) {
            Ok(stems) => {
                listener.progress.finish_input();
                let folder = stems
                    .first()
                    .and_then(|p| p.parent())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                println!("{}: {} stems in {folder}", input.display(), stems.len());
            }
            Err(EngineError::Cancelled) => {
                remove_if_empty(&args.out, out_existed);
                return cancelled_exit(&listener);
            }
            Err(e) => {
                listener.progress.clear();
                failures += 1;
                eprintln!("error: {e}");
            }
        }
    }
    remove_if_empty(&args.out, out_existed);
    if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn cancelled_exit(listener: &CliListener) -> ExitCode {
    listener.progress.clear();
    eprintln!("cancelled; no partial stems were kept");
    ExitCode::from(130)
}

/// Leaves no empty output folder behind when nothing was written into it.
fn remove_if_empty(dir: &std::path::Path, existed: bool) {
    if !existed {
        let _ = std::fs::remove_dir(dir);
    }
}
