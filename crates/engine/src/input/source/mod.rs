//! Getting a linked video's audio onto disk. Backends are tried in order (the built-in
//! downloader, then yt-dlp when it is installed); each writes into a private temporary
//! folder, and the audio is renamed into the download cache only once it is complete, so
//! a cancelled or failed download leaves nothing behind and a video is fetched only once.

mod builtin;
mod ytdlp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use builtin::BuiltinBackend;
pub use ytdlp::{YtDlpBackend, parse_progress_line};

use crate::error::{EngineError, Result};
use crate::events::{JobEvent, JobListener};
use crate::input::link::VideoId;

/// A way to download a video's audio.
pub trait Backend: Send + Sync {
    /// How the user knows this backend, in messages.
    fn name(&self) -> &str;

    /// Downloads the audio of `video` into the empty folder `dir`, reporting
    /// [`JobEvent::DownloadingAudio`] and stopping soon after the listener cancels.
    fn fetch(
        &self,
        video: &VideoId,
        dir: &Path,
        listener: &dyn JobListener,
    ) -> std::result::Result<Fetched, BackendError>;
}

/// A finished download, still in the backend's temporary folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub file: PathBuf,
    pub title: Option<String>,
}

/// Why one backend could not download a video.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The backend is not on this machine.
    #[error("{0}")]
    NotInstalled(String),
    /// The network or YouTube could not be reached, or stopped answering.
    #[error("{0}")]
    Offline(String),
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
}

/// One backend's failure, for the combined message.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendFailure {
    pub backend: String,
    pub error: BackendError,
}

/// The message when every backend failed: each backend's reason, and what to do.
pub fn describe_failures(video: &VideoId, failures: &[BackendFailure]) -> String {
    let reasons = failures
        .iter()
        .map(|f| format!("{}: {}", f.backend, f.error))
        .collect::<Vec<_>>()
        .join("; ");
    let offline = failures
        .iter()
        .any(|f| matches!(f.error, BackendError::Offline(_)))
        && failures.iter().all(|f| {
            matches!(
                f.error,
                BackendError::Offline(_) | BackendError::NotInstalled(_)
            )
        });
    let ytdlp_missing = failures
        .iter()
        .any(|f| matches!(f.error, BackendError::NotInstalled(_)));
    if offline {
        format!(
            "cannot reach YouTube to download {video}: you may be offline. Check the internet connection and retry ({reasons})"
        )
    } else if ytdlp_missing {
        format!(
            "could not download {video} ({reasons}). Installing yt-dlp (https://github.com/yt-dlp/yt-dlp) often helps: Stemdeck uses it when its built-in downloader fails"
        )
    } else {
        format!(
            "could not download {video} ({reasons}). YouTube changes often: updating yt-dlp (`yt-dlp -U`) or Stemdeck usually fixes this"
        )
    }
}

/// Audio of a video, in the download cache.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadedAudio {
    pub file: PathBuf,
    pub title: String,
    /// True when no download was needed.
    pub from_cache: bool,
}

/// What the cache keeps beside each download.
#[derive(Debug, Serialize, Deserialize)]
struct CachedInfo {
    title: String,
    file_name: String,
    backend: String,
}

/// Where links' audio comes from: the cache, else each backend in turn.
pub struct LinkSource {
    cache_dir: PathBuf,
    backends: Vec<Box<dyn Backend>>,
}

/// Settings for the standard backends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceOptions {
    /// yt-dlp to use instead of the one on `PATH`.
    pub ytdlp_path: Option<PathBuf>,
}

impl LinkSource {
    /// Where downloads are kept.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn new(cache_dir: PathBuf, backends: Vec<Box<dyn Backend>>) -> Self {
        Self {
            cache_dir,
            backends,
        }
    }

    /// The built-in downloader, then yt-dlp.
    pub fn standard(cache_dir: PathBuf, options: &SourceOptions) -> Self {
        Self::new(
            cache_dir,
            vec![
                Box::new(BuiltinBackend::default()),
                Box::new(YtDlpBackend::new(options.ytdlp_path.clone())),
            ],
        )
    }

    /// The standard download cache: `$STEMDECK_CACHE_DIR/downloads`, else the user's cache
    /// folder.
    pub fn default_cache_dir() -> PathBuf {
        crate::pipeline::cache::default_cache_root().join("downloads")
    }

    /// The video's audio from the cache, if it was downloaded before.
    pub fn cached(&self, video: &VideoId) -> Option<DownloadedAudio> {
        let bytes = std::fs::read(self.info_path(video)).ok()?;
        let info: CachedInfo = serde_json::from_slice(&bytes).ok()?;
        let file = self.cache_dir.join(&info.file_name);
        let present = file.is_file();
        present.then_some(DownloadedAudio {
            file,
            title: info.title,
            from_cache: true,
        })
    }

    fn info_path(&self, video: &VideoId) -> PathBuf {
        self.cache_dir.join(format!("{video}.json"))
    }

    /// The video's audio: from the cache, else downloaded by the first backend that can.
    pub fn fetch(&self, video: &VideoId, listener: &dyn JobListener) -> Result<DownloadedAudio> {
        if let Some(cached) = self.cached(video) {
            return Ok(cached);
        }
        let mut failures = Vec::new();
        for backend in &self.backends {
            if listener.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            listener.on_event(JobEvent::DownloadingAudio {
                video: video.to_string(),
                backend: backend.name().to_string(),
                bytes: 0,
                total: None,
            });
            let partial = PartialDir::create(&self.cache_dir, video).map_err(EngineError::io(
                &self.cache_dir,
                "cannot create the download folder",
            ))?;
            match backend.fetch(video, &partial.0, listener) {
                Ok(fetched) => return self.keep(video, backend.name(), fetched),
                Err(BackendError::Cancelled) => return Err(EngineError::Cancelled),
                Err(error) => {
                    tracing::warn!("{} could not download {video}: {error}", backend.name());
                    failures.push(BackendFailure {
                        backend: backend.name().to_string(),
                        error,
                    });
                }
            }
        }
        Err(EngineError::LinkDownload {
            message: describe_failures(video, &failures),
            failures,
        })
    }

    /// Moves a finished download into the cache: the audio first, then its info file,
    /// whose presence marks the entry complete.
    fn keep(&self, video: &VideoId, backend: &str, fetched: Fetched) -> Result<DownloadedAudio> {
        let ext = fetched
            .file
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| "m4a".into());
        let file_name = format!("{video}.{ext}");
        let file = self.cache_dir.join(&file_name);
        std::fs::rename(&fetched.file, &file)
            .map_err(EngineError::io(&file, "cannot keep the download"))?;
        let title = fetched
            .title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| video.to_string());
        let info = CachedInfo {
            title: title.clone(),
            file_name,
            backend: backend.to_string(),
        };
        let json = serde_json::to_vec_pretty(&info).expect("info serialises");
        stemdeck_audio::write_bytes_atomically(&self.info_path(video), &json)?;
        Ok(DownloadedAudio {
            file,
            title,
            from_cache: false,
        })
    }
}

/// A backend's private working folder, removed with everything in it when dropped.
struct PartialDir(PathBuf);

impl PartialDir {
    fn create(cache_dir: &Path, video: &VideoId) -> std::io::Result<Self> {
        std::fs::create_dir_all(cache_dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = cache_dir.join(format!(".partial-{video}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long a download may go without any progress before it counts as stalled.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// True when an error text describes a network that is down or a host that does not
/// answer, in the words reqwest, hyper, Python and the OS use.
pub(crate) fn sounds_offline(text: &str) -> bool {
    const MARKERS: &[&str] = &[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "temporary failure in name resolution",
        "nodename nor servname",
        "getaddrinfo failed",
        "no address associated",
        "failed to resolve",
        "network is unreachable",
        "no route to host",
        "connection refused",
        "connection reset",
        "timed out",
        "error trying to connect",
        "tcp connect error",
        "unable to download webpage",
        "unable to download api page",
        "urlopen error",
    ];
    let lower = text.to_ascii_lowercase();
    MARKERS.iter().any(|m| lower.contains(m))
}

#[cfg(test)]
mod tests;
