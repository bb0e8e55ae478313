//! What a ticket asks for and what a worker reports, as JSON. Paths are relative to the
//! shared folder, since each machine may mount it somewhere else.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use stemdeck_engine::analysis::Analysis;
use stemdeck_engine::input::link::VideoId;
use stemdeck_engine::jobs::library::JobTimings;
use stemdeck_engine::jobs::remote::RemoteProgress;
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::pipeline::StemFile;

/// The work a ticket carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// The server's job id, for the worker's logs and its heartbeat.
    pub job: u64,
    pub title: String,
    pub input: WorkInput,
    pub settings: JobSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkInput {
    /// A file in the shared folder (an upload to the server).
    Shared { path: PathBuf },
    /// A video, which the worker downloads itself.
    Link { video: VideoId, url: String },
}

/// One report on a run, in the order they happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Progress(RemoteProgress),
    /// The files are complete, under the shared folder.
    Done(Box<Finished>),
    Failed {
        worker: String,
        error: String,
        can_retry: bool,
        elapsed_secs: f64,
    },
    Cancelled {
        worker: String,
    },
}

impl Report {
    /// True for the last report of a run.
    pub fn is_end(&self) -> bool {
        !matches!(self, Report::Progress(_))
    }
}

/// A finished run's files, relative to the shared folder, and what made them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub title: String,
    pub folder: PathBuf,
    pub stems: Vec<StemFile>,
    pub mixes: Vec<PathBuf>,
    pub analysis: Option<Analysis>,
    pub timings: JobTimings,
    pub elapsed_secs: f64,
}

impl Finished {
    /// The same files, each under its own name in `folder`: where they were moved (or
    /// downloaded) to.
    pub fn moved_to(self, folder: PathBuf) -> Self {
        let moved = |p: &Path| folder.join(p.file_name().unwrap_or(p.as_os_str()));
        Self {
            stems: self
                .stems
                .iter()
                .map(|s| StemFile {
                    name: s.name.clone(),
                    path: moved(&s.path),
                })
                .collect(),
            mixes: self.mixes.iter().map(|m| moved(m)).collect(),
            folder,
            ..self
        }
    }
}

/// Where a run's upload travels in the shared store; it goes when the run ends.
pub fn inputs_of(run: u64) -> PathBuf {
    Path::new(".stemdeck").join("inputs").join(run.to_string())
}

/// `path` when it stays inside the folder it is relative to: no root, no `..`.
pub fn inside(path: &Path) -> Option<&Path> {
    let plain = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (plain && !path.as_os_str().is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_shared_folder_are_taken() {
        assert!(inside(Path::new("inputs/ab/song.wav")).is_some());
        assert!(inside(Path::new("../etc/passwd")).is_none());
        assert!(inside(Path::new("a/../../b")).is_none());
        assert!(inside(Path::new("/etc/passwd")).is_none());
        assert!(inside(Path::new("")).is_none());
    }
}
