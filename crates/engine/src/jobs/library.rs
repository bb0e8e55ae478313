//! The user's library: every job, queued or finished, kept in one JSON file under the app
//! data folder. Written atomically, so a crash mid-save leaves the previous library; a file
//! that cannot be read is set aside (never overwritten) and the user is told.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::input::link::{LinkError, VideoId, parse_video_link};
use crate::jobs::settings::JobSettings;
use crate::pipeline::StemFile;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "StoredSource")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum JobSource {
    File {
        path: PathBuf,
    },
    /// A video, by the ID parsed when it was added; `url` is the link as pasted.
    Link {
        video: VideoId,
        url: String,
    },
}

/// A job's source as libraries store it: those written before the video ID was kept have
/// only the link, which was valid when it was added.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredSource {
    File {
        path: PathBuf,
    },
    Link {
        #[serde(default)]
        video: Option<VideoId>,
        url: String,
    },
}

impl TryFrom<StoredSource> for JobSource {
    type Error = LinkError;

    fn try_from(stored: StoredSource) -> Result<Self, LinkError> {
        Ok(match stored {
            StoredSource::File { path } => JobSource::File { path },
            StoredSource::Link {
                video: Some(video),
                url,
            } => JobSource::Link { video, url },
            StoredSource::Link { video: None, url } => JobSource::Link {
                video: parse_video_link(&url)?.id,
                url,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum JobStage {
    Queued,
    Downloading,
    LoadingModel,
    Decoding,
    Separating,
    Writing,
    Analysing,
    Done,
    Failed,
    Cancelled,
    /// Stemdeck stopped (closed, crashed, the computer lost power) while the job ran.
    Interrupted,
}

impl JobStage {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStage::Done | JobStage::Failed | JobStage::Cancelled | JobStage::Interrupted
        )
    }
}

/// What an interrupted job says, in the queue and the library.
pub const INTERRUPTED: &str =
    "Interrupted: Stemdeck stopped before this job finished. Retry to run it again.";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Job {
    pub id: u64,
    pub title: String,
    pub source: JobSource,
    pub settings: JobSettings,
    pub stage: JobStage,
    pub error: Option<String>,
    /// Whether running the job again could help: false for a file that is not audio or
    /// settings no model has, true for a lost connection, a full disk or an interruption.
    #[serde(default = "can_retry_by_default")]
    pub can_retry: bool,
    pub stems: Vec<StemFile>,
    pub output_dir: Option<PathBuf>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Seconds the last run took (or has taken so far).
    pub elapsed_secs: f64,
    /// True when the stems were reused from an earlier identical job.
    #[serde(default)]
    pub from_cache: bool,
    /// The mixer as the user left it for this song.
    #[serde(default)]
    pub mix: Option<crate::player::MixSettings>,
    /// Tempo, beats, key and loudness, measured once the stems were written.
    #[serde(default)]
    pub analysis: Option<stemdeck_analysis::Analysis>,
    /// Stem files of a finished job that are no longer where they were written (moved or
    /// deleted since); found each time the library is listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_stems: Vec<String>,
    /// The custom mixes the job's settings asked for, written beside the stems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixes: Vec<StemFile>,
    /// How the last finished run went: how long the song is and how fast it separated.
    #[serde(default)]
    pub timings: Option<JobTimings>,
    /// The run on the shared queue this job was handed over as (`stemdeck serve --queue`);
    /// `None` for a job this machine runs itself, or one not handed over yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_run: Option<u64>,
}

/// How fast a job ran, on what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobTimings {
    /// The song's length; `None` when its stems were reused and nothing was separated.
    pub audio_secs: Option<f64>,
    /// Seconds of work per second of audio (below 1 is faster than real time).
    pub rtf: Option<f64>,
    /// The device and precision the model ran with ("cpu", "fast").
    pub device: String,
    pub precision: String,
    /// The worker that separated it, for a job run on the shared queue; `None` when this
    /// machine did.
    #[serde(default)]
    pub worker: Option<String>,
    /// The SHA-256 of the model file it was separated with (of each file, joined by `+`,
    /// for a bag); `None` when its stems were reused.
    #[serde(default)]
    pub model_sha256: Option<String>,
}

impl JobTimings {
    /// A separation of `audio_secs` that took `elapsed` seconds on `device`.
    pub fn measured(
        audio_secs: Option<f64>,
        elapsed: f64,
        device: crate::DeviceChoice,
        precision: stemdeck_demucs::Precision,
    ) -> Self {
        Self {
            audio_secs,
            rtf: audio_secs.filter(|&a| a > 0.0).map(|a| elapsed / a),
            device: device.name().to_owned(),
            precision: device.effective_precision(precision).name().to_owned(),
            worker: None,
            model_sha256: None,
        }
    }
}

impl Job {
    /// Notes which of a finished job's stems are gone from disk.
    pub fn check_stems(&mut self) {
        self.missing_stems = if self.stage == JobStage::Done {
            self.stems
                .iter()
                .filter(|s| !s.path.is_file())
                .map(|s| s.name.clone())
                .collect()
        } else {
            Vec::new()
        };
    }
}

fn can_retry_by_default() -> bool {
    true
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LibraryFile {
    /// Libraries from before ids were random numbered their jobs from 1; the field is kept
    /// so that an older Stemdeck can still read this file.
    #[serde(default)]
    next_id: u64,
    jobs: Vec<Job>,
}

#[derive(Debug)]
pub struct Library {
    file: PathBuf,
    jobs: Vec<Job>,
}

/// Ids are random and below 2^53, so that one cannot be guessed from another (the server
/// hands them out) and JavaScript numbers hold them exactly.
const MAX_JOB_ID: u64 = 1 << 53;

/// Problems with the library file.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("cannot save the library: {0}")]
    Save(#[source] stemdeck_audio::AudioError),
}

impl Library {
    pub const FILE_NAME: &'static str = "library.json";

    /// Opens the library in `dir`. The second value is a message for the user when the file
    /// existed but could not be read; it was moved aside, not deleted.
    pub fn open(dir: &Path) -> (Self, Option<String>) {
        let file = dir.join(Self::FILE_NAME);
        let mut warning = None;
        let stored = match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<LibraryFile>(&bytes) {
                Ok(stored) => stored,
                Err(e) => {
                    let aside = dir.join(format!("{}.unreadable-{}", Self::FILE_NAME, unix_now()));
                    let _ = std::fs::rename(&file, &aside);
                    warning = Some(format!(
                        "Your library file could not be read ({e}); it was kept as {} and a new library was started.",
                        aside.display()
                    ));
                    LibraryFile::default()
                }
            },
            Err(_) => LibraryFile::default(),
        };
        let mut library = Self {
            file,
            jobs: stored.jobs,
        };
        // A job that was running when Stemdeck stopped left no stems (they are written
        // under temporary names); it says so and waits for a retry. Queued jobs stay queued,
        // and so does a job handed to the shared queue, which runs on without this process.
        for job in &mut library.jobs {
            if !job.stage.is_finished() && job.stage != JobStage::Queued && job.remote_run.is_none()
            {
                job.stage = JobStage::Interrupted;
                job.error = Some(INTERRUPTED.into());
                job.can_retry = true;
                job.stems.clear();
            }
        }
        (library, warning)
    }

    /// The folder the library file is in.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub fn save(&self) -> Result<(), LibraryError> {
        let stored = LibraryFile {
            next_id: self.jobs.iter().map(|j| j.id + 1).max().unwrap_or(1),
            jobs: self.jobs.clone(),
        };
        let json = serde_json::to_vec_pretty(&stored).expect("jobs serialise");
        stemdeck_audio::write_bytes_atomically(&self.file, &json).map_err(LibraryError::Save)
    }

    pub fn add(&mut self, title: String, source: JobSource, settings: JobSettings) -> Job {
        let id = loop {
            let id = rand::random_range(1..MAX_JOB_ID);
            if self.get(id).is_none() {
                break id;
            }
        };
        let job = Job {
            id,
            title,
            source,
            settings,
            stage: JobStage::Queued,
            error: None,
            can_retry: true,
            stems: Vec::new(),
            output_dir: None,
            created_at: unix_now(),
            elapsed_secs: 0.0,
            from_cache: false,
            mix: None,
            analysis: None,
            missing_stems: Vec::new(),
            mixes: Vec::new(),
            timings: None,
            remote_run: None,
        };
        self.jobs.push(job.clone());
        job
    }

    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    pub fn get(&self, id: u64) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }

    pub fn remove(&mut self, id: u64) -> Option<Job> {
        let index = self.jobs.iter().position(|j| j.id == id)?;
        Some(self.jobs.remove(index))
    }

    /// The oldest job waiting to run (or, with a shared queue, to be handed over).
    pub fn next_queued(&self) -> Option<&Job> {
        self.jobs
            .iter()
            .find(|j| j.stage == JobStage::Queued && j.remote_run.is_none())
    }

    /// Jobs handed to the shared queue that have not ended, as (job, run).
    pub fn handed_over(&self) -> Vec<(u64, u64)> {
        self.jobs
            .iter()
            .filter(|j| !j.stage.is_finished())
            .filter_map(|j| Some((j.id, j.remote_run?)))
            .collect()
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_a_restart_and_interrupted_ones_wait_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut library, warning) = Library::open(dir.path());
        assert!(warning.is_none());
        let a = library.add(
            "a".into(),
            JobSource::File {
                path: "/music/a.mp3".into(),
            },
            JobSettings::default(),
        );
        let b = library.add(
            "b".into(),
            JobSource::Link {
                video: VideoId::try_from("dQw4w9WgXcQ".to_string()).unwrap(),
                url: "https://youtu.be/dQw4w9WgXcQ".into(),
            },
            JobSettings::default(),
        );
        let queued = library.add(
            "q".into(),
            JobSource::File {
                path: "/music/q.flac".into(),
            },
            JobSettings::default(),
        );
        library.get_mut(a.id).unwrap().stage = JobStage::Done;
        library.get_mut(b.id).unwrap().stage = JobStage::Separating;
        library.save().unwrap();

        let (reopened, warning) = Library::open(dir.path());
        assert!(warning.is_none());
        assert_eq!(reopened.jobs().len(), 3);
        assert_eq!(reopened.get(a.id).unwrap().stage, JobStage::Done);
        let interrupted = reopened.get(b.id).unwrap();
        assert_eq!(interrupted.stage, JobStage::Interrupted);
        assert!(interrupted.can_retry);
        assert_eq!(interrupted.error.as_deref(), Some(INTERRUPTED));
        assert_eq!(reopened.next_queued().unwrap().id, queued.id);
        let mut reopened = reopened;
        let c = reopened.add(
            "c".into(),
            JobSource::File {
                path: "/c.wav".into(),
            },
            JobSettings::default(),
        );
        assert!(
            ![a.id, b.id, queued.id].contains(&c.id),
            "a new job never takes an id in use"
        );
    }

    #[test]
    fn an_unreadable_library_is_set_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(Library::FILE_NAME), b"{ not json").unwrap();
        let (library, warning) = Library::open(dir.path());
        assert!(library.jobs().is_empty());
        let warning = warning.expect("the user is told");
        assert!(warning.contains("could not be read"), "{warning}");
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].starts_with("library.json.unreadable-"));
        assert_eq!(
            std::fs::read(dir.path().join(&kept[0])).unwrap(),
            b"{ not json"
        );
    }
}
