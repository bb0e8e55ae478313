//! `stemdeck`: split songs into stems from the terminal.
//!
//! Exit codes: 0 all inputs separated; 1 at least one input failed (the others were still
//! separated); 2 bad command line; 3 the model could not be loaded; 130 cancelled.

mod logging;
mod models;
mod phases;
mod progress;
mod serve;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};
use stemdeck_engine::input::link::{LinkError, parse_video_link};
use stemdeck_engine::input::source::{LinkSource, SourceOptions};
use stemdeck_engine::outputs::export::export_zip;
use stemdeck_engine::outputs::mix::MixRecipe;
use stemdeck_engine::pipeline::StemFile;
use stemdeck_engine::pipeline::cache::ResultCache;
use stemdeck_engine::pipeline::options::{self, DEFAULT_MP3_KBPS, PEAK_DBFS_MAX, PEAK_DBFS_MIN};
use stemdeck_engine::pipeline::run::{Input, RunOptions, Sources, run_input};
use stemdeck_engine::{
    ApplyOptions, ClipMode, DeviceChoice, EngineError, FileFormat, JobListener, ModelChoice,
    ModelStore, OptionError, OutputOptions, Precision, SampleFormat, Separator,
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
    /// How log lines are written on stderr: text, or json (one object per line, with the
    /// job id, stage and timings).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Separate audio files or YouTube videos into stems.
    Separate(SeparateArgs),
    /// List, download, import or remove the models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Serve the HTTP API and the browser UI (on this machine only, unless --bind says
    /// otherwise, which then needs a token).
    Serve(serve::ServeArgs),
    /// Separate jobs from a shared queue (`stemdeck serve --queue`), on this machine.
    Worker(worker::WorkerArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ClipArg {
    Rescale,
    Clamp,
}

#[derive(clap::Args)]
struct SeparateArgs {
    /// Audio files (WAV, FLAC, MP3, Ogg Vorbis, M4A/MP4 AAC or ALAC, ADTS AAC), YouTube
    /// links or bare 11-character video IDs.
    #[arg(required = true, value_name = "FILE, URL OR ID")]
    inputs: Vec<String>,
    /// Folder for the stems; each input gets <OUT>/<file name or video title>/<stem>.<format>.
    #[arg(short, long, default_value = "separated")]
    out: PathBuf,
    /// Model: htdemucs (4 stems), htdemucs_6s (6 stems), htdemucs_ft (4 stems, best, ~4x slower).
    #[arg(short, long, default_value = "htdemucs")]
    model: String,
    /// A .safetensors or official .th checkpoint to use instead of the model store.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    #[arg(long, default_value = "cpu", value_parser = device_parser())]
    device: DeviceChoice,
    /// Arithmetic of the model's matrix multiplies [default: fast where this CPU has
    /// bf16 (avx512_bf16), else exact].
    #[arg(long, value_parser = precision_parser())]
    precision: Option<Precision>,
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
    /// File format of stems and mixes.
    #[arg(long, default_value = "wav", value_parser = format_parser())]
    format: FileFormat,
    /// MP3 constant bitrate in kbps: 128, 160, 192, 224, 256 or 320.
    #[arg(long, value_name = "KBPS", default_value_t = DEFAULT_MP3_KBPS)]
    mp3_bitrate: u32,
    /// Write 24-bit samples, WAV or FLAC (default 16-bit).
    #[arg(long, conflicts_with = "float32")]
    int24: bool,
    /// Write 32-bit float WAV (default 16-bit).
    #[arg(long)]
    float32: bool,
    /// Normalise each file's peak to DBFS (default -1) instead of keeping the stems' levels
    /// (which add up to the mix).
    #[arg(long, value_name = "DBFS", num_args = 0..=1, default_missing_value = "-1", allow_negative_numbers = true)]
    normalize: Option<f32>,
    /// Also write a mix of some stems, e.g. "drums+bass" or "all-vocals" (repeatable).
    #[arg(long, value_name = "STEMS")]
    mix: Vec<String>,
    /// Also bundle each input's stems (and mixes) into <OUT>/<name>.zip.
    #[arg(long)]
    zip: bool,
    /// Number of CPU threads (default: all cores).
    #[arg(short, long, value_name = "THREADS")]
    jobs: Option<usize>,
    /// The yt-dlp program to fall back to for links (default: yt-dlp on PATH).
    #[arg(long, value_name = "PATH")]
    yt_dlp: Option<PathBuf>,
    /// Separate again even when this song was separated before with the same settings.
    #[arg(long)]
    no_cache: bool,
}

/// The engine's devices as `--device` values.
fn device_parser() -> impl TypedValueParser<Value = DeviceChoice> {
    PossibleValuesParser::new(DeviceChoice::ALL.map(|d| d.name()))
        .map(|name| name.parse::<DeviceChoice>().expect("offered names parse"))
}

fn precision_parser() -> impl TypedValueParser<Value = Precision> {
    PossibleValuesParser::new([
        PossibleValue::new(Precision::Fast.name()).help(
            "bf16 matrix multiplies where the CPU has them (about twice as fast, the same separation quality); exact elsewhere",
        ),
        PossibleValue::new(Precision::Exact.name())
            .help("f32 throughout, bit-faithful to PyTorch demucs"),
    ])
    .map(|name| name.parse::<Precision>().expect("offered names parse"))
}

fn format_parser() -> impl TypedValueParser<Value = FileFormat> {
    PossibleValuesParser::new(FileFormat::ALL.map(|f| f.name()))
        .map(|name| name.parse::<FileFormat>().expect("offered names parse"))
}

/// An engine rule broken by the command line, in the words of its flags.
fn flag_message(e: &OptionError) -> String {
    match e {
        OptionError::FlacFloat => {
            "FLAC stores 16- or 24-bit samples; use --int24 or leave it at 16-bit".into()
        }
        OptionError::Mp3Bitrate { .. } => format!("--mp3-bitrate: {e}"),
        OptionError::PeakLevel { dbfs } => format!(
            "--normalize takes a peak level from {PEAK_DBFS_MIN} to {PEAK_DBFS_MAX} dBFS, got {dbfs}"
        ),
        OptionError::Overlap { .. } | OptionError::Shifts { .. } => format!("--{e}"),
        OptionError::NoYtDlp { .. } | OptionError::DeviceNotBuilt { .. } => e.to_string(),
    }
}

/// An input on the command line as a file or a video, or why it is neither.
fn classify(text: &str) -> Result<Input, String> {
    let path = Path::new(text);
    if path.exists() {
        return Ok(Input::File(path.to_owned()));
    }
    match parse_video_link(text) {
        Ok(link) => Ok(Input::Video(link.id)),
        Err(LinkError::NotALink) if !text.contains("://") => Err(format!("{text}: file not found")),
        Err(e) => Err(format!("{text}: {e}")),
    }
}

struct CliListener {
    progress: TerminalProgress,
    cancelled: Arc<AtomicBool>,
    started: std::time::Instant,
    /// When the first separated audio of the run was ready, and how much it was.
    first_stems: std::sync::Mutex<Option<(std::time::Duration, f64)>>,
    phases: phases::RunPhases,
}

impl JobListener for CliListener {
    fn on_stems(&self, chunk: &stemdeck_engine::StemsChunk<'_>) {
        let mut first = self.first_stems.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            let seconds = chunk.frames() as f64 / chunk.sample_rate.max(1) as f64;
            *first = Some((self.started.elapsed(), seconds));
        }
    }

    fn on_event(&self, event: stemdeck_engine::JobEvent) {
        self.phases.on_event(&event, self.started.elapsed());
        logging::job_event(&event, self.started.elapsed().as_secs_f64());
        self.progress.on_event(event);
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

fn main() -> ExitCode {
    stemdeck_engine::memory::configure_allocator();
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_) | Command::Worker(_));
    // A server's log is its only voice; a separation has its progress bars and error
    // lines, so it logs only when asked (RUST_LOG, or JSON for a machine).
    logging::init(cli.log_format, serving);
    match cli.command {
        Command::Separate(args) => separate(args),
        Command::Models(command) => models::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Worker(args) => worker::run(args),
    }
}

/// Limits the CPU threads a separation uses to `-j`, when given.
fn use_threads(jobs: Option<usize>) -> Result<(), ExitCode> {
    if let Some(threads) = jobs {
        if threads == 0 {
            eprintln!("error: --jobs must be at least 1");
            return Err(ExitCode::from(2));
        }
        // Candle's CPU kernels size their thread pools from this variable; set it before
        // any of them starts.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    Ok(())
}

fn separate(args: SeparateArgs) -> ExitCode {
    if let Err(code) = use_threads(args.jobs) {
        return code;
    }
    if let Err(e) = options::check_overlap(args.overlap).and(options::check_shifts(args.shifts)) {
        eprintln!("error: {}", flag_message(&e));
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
        started: std::time::Instant::now(),
        first_stems: std::sync::Mutex::new(None),
        phases: phases::RunPhases::default(),
    };

    let choice = match &args.weights {
        Some(path) => ModelChoice::Weights(path.clone()),
        None => ModelChoice::Named(args.model.clone()),
    };
    let device = args.device;
    let precision = args.precision.unwrap_or_else(Precision::recommended);
    let apply = ApplyOptions {
        segment: args.segment,
        overlap: args.overlap,
        shifts: args.shifts,
        ..Default::default()
    };
    let output = match output_options(&args) {
        Ok(output) => output,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };

    let inputs: Vec<(String, Result<Input, String>)> = args
        .inputs
        .iter()
        .map(|text| (text.clone(), classify(text)))
        .collect();
    let links = LinkSource::standard(
        LinkSource::default_cache_dir(),
        &SourceOptions {
            ytdlp_path: args.yt_dlp.clone(),
        },
    );
    let results = ResultCache::standard();
    // What an earlier, killed run left under temporary names goes first; files of another
    // stemdeck still writing here are left alone.
    stemdeck_engine::pipeline::leftovers::sweep(&args.out, 1);
    stemdeck_engine::pipeline::leftovers::sweep(links.cache_dir(), 0);
    stemdeck_engine::pipeline::leftovers::sweep(results.dir(), 0);
    let sources = Sources {
        links: &links,
        results: &results,
    };
    let folder_for = |name: &str| args.out.join(name);
    let options = RunOptions {
        model: &choice,
        precision: device.effective_precision(precision),
        apply: &apply,
        output: &output,
        output_root: &args.out,
        folder_for: &folder_for,
        reuse_cached: !args.no_cache,
    };
    // The model is loaded on first need: inputs answered from the cache do not need it.
    let separator: OnceLock<Arc<Separator>> = OnceLock::new();
    let model_failed = AtomicBool::new(false);
    let load = |listener: &dyn JobListener| -> stemdeck_engine::Result<Arc<Separator>> {
        if let Some(loaded) = separator.get() {
            return Ok(loaded.clone());
        }
        let loaded = Separator::load(
            &choice,
            device,
            precision,
            &ModelStore::from_env(),
            listener,
        )
        .inspect_err(|e| {
            if !matches!(e, EngineError::Cancelled) {
                model_failed.store(true, Ordering::Relaxed);
            }
        })?;
        Ok(separator.get_or_init(|| Arc::new(loaded)).clone())
    };

    let out_existed = args.out.exists();
    let mut failures = 0;
    for (text, input) in &inputs {
        let input = match input {
            Ok(input) => input,
            Err(message) => {
                failures += 1;
                eprintln!("error: {message}");
                continue;
            }
        };
        match run_input(input, &options, &sources, &load, &listener) {
            Ok(outcome) => {
                listener.progress.finish_input();
                let reused = if outcome.from_cache {
                    " (separated before with these settings; reused)"
                } else {
                    ""
                };
                let name = match input {
                    Input::File(_) => text.clone(),
                    Input::Video(_) => format!("{text} \"{}\"", outcome.title),
                };
                println!(
                    "{name}: {} stems in {}{reused}",
                    outcome.stems.len(),
                    outcome.dir.display()
                );
                if let Some(analysis) = &outcome.analysis {
                    println!("  {}", describe_analysis(analysis));
                }
                for mix in &outcome.mixes {
                    println!("  mix: {}", mix.display());
                }
                if args.zip {
                    match bundle(&outcome) {
                        Ok(zip) => println!("  zip: {}", zip.display()),
                        Err(e) => {
                            failures += 1;
                            eprintln!("error: {text}: {e}");
                        }
                    }
                }
            }
            Err(EngineError::Cancelled) => {
                remove_if_empty(&args.out, out_existed);
                return cancelled_exit(&listener);
            }
            Err(e) if model_failed.load(Ordering::Relaxed) => {
                listener.progress.clear();
                eprintln!("error: {e}");
                remove_if_empty(&args.out, out_existed);
                return ExitCode::from(3);
            }
            Err(e) => {
                listener.progress.clear();
                failures += 1;
                if e.file() == Some(Path::new(text)) {
                    eprintln!("error: {e}");
                } else {
                    eprintln!("error: {text}: {e}");
                }
            }
        }
    }
    remove_if_empty(&args.out, out_existed);
    // STEMDECK_PROFILE=1 asks for the model's op-level profile (see scripts/bench-vs-pytorch.sh).
    if let Some(report) = stemdeck_demucs::profile::report() {
        if let Some((after, seconds)) = *listener
            .first_stems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            eprintln!(
                "first separated audio ({seconds:.1} s of stems) ready {:.1} s after start",
                after.as_secs_f64()
            );
        }
        eprint!("{report}");
        let forward = stemdeck_demucs::profile::rows()
            .iter()
            .find(|r| r.name == stemdeck_demucs::profile::FORWARD)
            .map_or(std::time::Duration::ZERO, |r| r.total);
        eprint!(
            "{}",
            listener.phases.report(listener.started.elapsed(), forward)
        );
    }
    if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn output_options(args: &SeparateArgs) -> Result<OutputOptions, String> {
    if args.format == FileFormat::Mp3 && (args.int24 || args.float32) {
        return Err("--int24 and --float32 are for WAV and FLAC; MP3 has --mp3-bitrate".into());
    }
    if args.format != FileFormat::Mp3 && args.mp3_bitrate != DEFAULT_MP3_KBPS {
        return Err("--mp3-bitrate needs --format mp3".into());
    }
    let samples = if args.int24 {
        SampleFormat::Int24
    } else if args.float32 {
        SampleFormat::Float32
    } else {
        SampleFormat::Int16
    };
    let format = options::output_format(args.format, samples, args.mp3_bitrate)
        .map_err(|e| flag_message(&e))?;
    if let Some(dbfs) = args.normalize {
        options::check_peak_level(f64::from(dbfs)).map_err(|e| flag_message(&e))?;
    }
    let mixes = args
        .mix
        .iter()
        .map(|spec| MixRecipe::parse(spec).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OutputOptions {
        format,
        clip: match args.clip_mode {
            ClipArg::Rescale => ClipMode::Rescale,
            ClipArg::Clamp => ClipMode::Clamp,
        },
        normalize_dbfs: args.normalize,
        two_stems: args.two_stems.clone(),
        mixes,
    })
}

/// `<OUT>/<folder>.zip` beside the stems' folder, with the stems and mixes inside.
fn bundle(outcome: &stemdeck_engine::pipeline::run::Outcome) -> stemdeck_engine::Result<PathBuf> {
    let folder = outcome
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stems".into());
    let dest = outcome.dir.with_file_name(format!("{folder}.zip"));
    let mut files = outcome.stems.clone();
    files.extend(outcome.mixes.iter().cloned().map(StemFile::from_path));
    export_zip(&files, &folder, &dest)?;
    Ok(dest)
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

/// One line a musician reads at a glance: "tempo 123.6 BPM · key C minor · -19.2 LUFS,
/// peak -2.0 dBTP".
fn describe_analysis(analysis: &stemdeck_analysis::Analysis) -> String {
    let tempo = analysis
        .tempo
        .as_ref()
        .map_or("no steady tempo".to_string(), |t| {
            format!("tempo {:.1} BPM", t.bpm)
        });
    let key = analysis
        .key
        .as_ref()
        .map_or("no clear key".to_string(), |k| format!("key {}", k.name));
    let loudness = match (
        analysis.mix_loudness.integrated_lufs,
        analysis.mix_loudness.true_peak_dbtp,
    ) {
        (Some(lufs), Some(peak)) => format!("{lufs:.1} LUFS, peak {peak:.1} dBTP"),
        _ => "silent".to_string(),
    };
    format!("{tempo} · {key} · {loudness}")
}
