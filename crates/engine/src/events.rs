//! What a job tells whoever runs it (the CLI's progress bars, the app's queue, a server's
//! stream), and how it is cancelled: the one interface every source and stage reports to.

use std::path::PathBuf;

use stemdeck_demucs::Progress;

/// What a job reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    DownloadingModel {
        file: String,
        bytes: u64,
        total: Option<u64>,
    },
    /// The audio of a linked video is being downloaded (`bytes` of `total`).
    DownloadingAudio {
        video: String,
        backend: String,
        bytes: u64,
        total: Option<u64>,
    },
    /// The input's title is known (a video's, once fetched).
    SourceReady {
        title: String,
    },
    LoadingModel,
    Decoding {
        input: PathBuf,
    },
    Separating {
        input: PathBuf,
        progress: Progress,
    },
    Writing {
        path: PathBuf,
    },
    /// The stems are written; their tempo, key and loudness are being measured.
    Analysing,
    Finished {
        input: PathBuf,
        stems: Vec<PathBuf>,
    },
}

/// Receives job events and is polled for cancellation. Shared by the CLI and the app.
pub trait JobListener: Sync {
    fn on_event(&self, _event: JobEvent) {}
    fn is_cancelled(&self) -> bool {
        false
    }
    /// A stretch of the stems, as soon as the separation has finished it (long before the
    /// files are written), in order from the start of the track: to listen while the
    /// separation runs.
    fn on_stems(&self, _chunk: &StemsChunk<'_>) {}
}

/// One stretch of a job's stems as the job will write them: two-stems applied, before any
/// level finishing (clip prevention or normalisation, which needs the whole stem).
/// Consecutive chunks follow each other without gap and together cover the track.
#[derive(Debug, Clone, Copy)]
pub struct StemsChunk<'a> {
    /// Where the chunk starts, in frames from the start of the track.
    pub start_frame: usize,
    /// The whole track's length in frames, which the chunks add up to.
    pub total_frames: usize,
    pub sample_rate: u32,
    /// The stems' names, in the order of `stems` (`vocals`, `no_vocals`).
    pub names: &'a [String],
    /// `stems[stem][channel][frame]`; every stem and channel has the same length.
    pub stems: &'a [Vec<Vec<f32>>],
}

impl StemsChunk<'_> {
    pub fn frames(&self) -> usize {
        self.stems
            .first()
            .and_then(|s| s.first())
            .map_or(0, Vec::len)
    }
}
