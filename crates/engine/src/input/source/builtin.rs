//! The built-in downloader (rusty_ytdl): audio only, the M4A/AAC stream that our decoder
//! reads, fetched in small ranges so progress moves and a stall is noticed.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusty_ytdl::{DownloadOptions, RequestOptions, Video, VideoError, VideoFormat, VideoOptions};

use super::{BackendError, DEFAULT_STALL_TIMEOUT, Fetched, sounds_offline};
use crate::events::{JobEvent, JobListener};
use crate::input::link::VideoId;

/// Bytes asked for per request: small enough for smooth progress, large enough not to
/// slow the download.
const RANGE_BYTES: u64 = 512 * 1024;

#[derive(Debug, Clone)]
pub struct BuiltinBackend {
    /// Longest wait for a connection to YouTube.
    pub connect_timeout: Duration,
    /// Longest wait for any one answer (the video page, or the next piece of audio).
    pub stall_timeout: Duration,
    /// An HTTP(S) or SOCKS proxy for every request; `None` uses the system's
    /// (`HTTPS_PROXY` and friends).
    pub proxy: Option<String>,
}

impl Default for BuiltinBackend {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            proxy: None,
        }
    }
}

/// Audio-only AAC in an MP4 container: what symphonia decodes without ffmpeg.
fn is_m4a_audio(format: &VideoFormat) -> bool {
    format.has_audio
        && !format.has_video
        && !format.is_hls
        && format.mime_type.container == "mp4"
        && format
            .mime_type
            .codecs
            .iter()
            .any(|c| c.starts_with("mp4a"))
}

impl super::Backend for BuiltinBackend {
    fn name(&self) -> &str {
        "built-in downloader"
    }

    fn fetch(
        &self,
        video: &VideoId,
        dir: &Path,
        listener: &dyn JobListener,
    ) -> Result<Fetched, BackendError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackendError::Failed(format!("cannot start the downloader ({e})")))?;
        runtime.block_on(self.download(video, dir, listener))
    }
}

impl BuiltinBackend {
    async fn download(
        &self,
        video: &VideoId,
        dir: &Path,
        listener: &dyn JobListener,
    ) -> Result<Fetched, BackendError> {
        let mut client = rusty_ytdl::reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.stall_timeout);
        if let Some(proxy) = &self.proxy {
            let proxy = rusty_ytdl::reqwest::Proxy::all(proxy).map_err(|e| {
                BackendError::Failed(format!("the proxy {proxy} is not valid ({e})"))
            })?;
            client = client.proxy(proxy);
        }
        let client = client
            .build()
            .map_err(|e| BackendError::Failed(format!("cannot start the downloader ({e})")))?;
        let options = VideoOptions {
            quality: rusty_ytdl::VideoQuality::HighestAudio,
            filter: rusty_ytdl::VideoSearchOptions::Custom(Arc::new(is_m4a_audio)),
            download_options: DownloadOptions {
                dl_chunk_size: Some(RANGE_BYTES),
            },
            request_options: RequestOptions {
                client: Some(client),
                // Retries back off for seconds each; one is enough to ride out a hiccup.
                max_retries: Some(1),
                ..Default::default()
            },
        };
        let yt = Video::new_with_options(video.watch_url(), options).map_err(describe)?;

        let info = self
            .guarded(listener, "the video page", yt.get_basic_info())
            .await?;
        if !info.formats.iter().any(is_m4a_audio) {
            return Err(BackendError::Failed(
                "YouTube offered no M4A/AAC audio stream for this video".into(),
            ));
        }
        let title = Some(info.video_details.title.clone()).filter(|t| !t.trim().is_empty());

        let stream = self
            .guarded(listener, "the audio stream", yt.stream())
            .await?;
        let total = Some(stream.content_length() as u64).filter(|&t| t > 0);
        let path = dir.join("audio.m4a");
        let mut file = std::fs::File::create(&path)
            .map_err(|e| BackendError::Failed(format!("cannot write the download ({e})")))?;
        let mut bytes = 0u64;
        listener.on_event(JobEvent::DownloadingAudio {
            video: video.to_string(),
            backend: "built-in downloader".into(),
            bytes,
            total,
        });
        while let Some(chunk) = self
            .guarded(listener, "the next part of the audio", stream.chunk())
            .await?
        {
            file.write_all(&chunk)
                .map_err(|e| BackendError::Failed(format!("cannot write the download ({e})")))?;
            bytes += chunk.len() as u64;
            listener.on_event(JobEvent::DownloadingAudio {
                video: video.to_string(),
                backend: "built-in downloader".into(),
                bytes,
                total,
            });
        }
        if let Some(total) = total
            && bytes < total
        {
            return Err(BackendError::Failed(format!(
                "the download stopped early ({bytes} of {total} bytes)"
            )));
        }
        file.sync_all()
            .map_err(|e| BackendError::Failed(format!("cannot write the download ({e})")))?;
        Ok(Fetched { file: path, title })
    }

    /// Runs one request, giving up when it takes longer than the stall timeout (offline)
    /// or the job is cancelled.
    async fn guarded<T>(
        &self,
        listener: &dyn JobListener,
        what: &str,
        request: impl Future<Output = Result<T, VideoError>>,
    ) -> Result<T, BackendError> {
        let cancelled = async {
            loop {
                if listener.is_cancelled() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            outcome = tokio::time::timeout(self.stall_timeout, request) => match outcome {
                Ok(result) => result.map_err(describe),
                Err(_) => Err(BackendError::Offline(format!(
                    "no answer from YouTube for {what} within {} s",
                    self.stall_timeout.as_secs()
                ))),
            },
            () = cancelled => Err(BackendError::Cancelled),
        }
    }
}

/// A rusty_ytdl error in a musician's words.
fn describe(error: VideoError) -> BackendError {
    let mut chain = vec![error.to_string()];
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        chain.push(inner.to_string());
        source = inner.source();
    }
    // reqwest repeats its outer message in the next link of the chain; say it once.
    chain.dedup_by(|inner, outer| outer.contains(inner.as_str()));
    let text = chain.join(": ");
    // The innermost cause is the one a person can act on ("Connection refused").
    let cause = chain.last().cloned().unwrap_or_default();
    match error {
        VideoError::VideoNotFound | VideoError::VideoSourceNotFound => BackendError::Failed(
            "YouTube says this video does not exist or is not available".into(),
        ),
        VideoError::VideoIsPrivate => BackendError::Failed("this video is private".into()),
        VideoError::FormatNotFound => {
            BackendError::Failed("YouTube offered no M4A/AAC audio stream for this video".into())
        }
        _ if sounds_offline(&text) => {
            BackendError::Offline(format!("cannot reach YouTube ({cause})"))
        }
        _ => BackendError::Failed(text),
    }
}
