//! Log lines on stderr, as text for a person or JSON (one object per line) for a machine.

use stemdeck_engine::JobEvent;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `RUST_LOG` decides the detail; otherwise a server (or JSON) logs each job's stages and
/// requests, and a terminal separation logs nothing: it prints its own progress and one
/// line per failure, which library warnings would only clutter.
pub fn init(format: LogFormat, serving: bool) {
    let default = if serving || format == LogFormat::Json {
        "info"
    } else {
        "off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: a service's log goes to a file or journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// One line per stage of a separation run by the CLI.
pub fn job_event(event: &JobEvent, elapsed_secs: f64) {
    match event {
        JobEvent::LoadingModel => {
            tracing::info!(stage = "loading_model", elapsed_secs, "job stage")
        }
        JobEvent::Decoding { input } => {
            tracing::info!(stage = "decoding", input = %input.display(), elapsed_secs, "job stage")
        }
        JobEvent::Separating { input, progress } if progress.segments_done == 0 => tracing::info!(
            stage = "separating",
            input = %input.display(),
            segments = progress.segments_total,
            elapsed_secs,
            "job stage"
        ),
        JobEvent::Writing { path } => {
            tracing::info!(stage = "writing", path = %path.display(), elapsed_secs, "job stage")
        }
        JobEvent::Finished { input, stems } => tracing::info!(
            stage = "done",
            input = %input.display(),
            stems = stems.len(),
            elapsed_secs,
            "job finished"
        ),
        _ => {}
    }
}
