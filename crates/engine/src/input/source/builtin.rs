//! The built-in downloader (rusty_ytdl): audio only, the Opus stream in WebM (itag 251)
//! when the video has one, else AAC in M4A (itag 140), fetched in small ranges so progress
//! moves and a stall is noticed.

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

/// Audio only, in a stream our decoder reads: Opus in WebM, or AAC in MP4.
fn is_audio_we_read(format: &VideoFormat) -> bool {
    format.has_audio && !format.has_video && !format.is_hls && stream_rank(format).is_some()
}

/// How much a stream is preferred, best first: Opus in WebM (the better encode at a higher
/// bitrate), then AAC in MP4.
fn stream_rank(format: &VideoFormat) -> Option<u8> {
    let codecs = &format.mime_type.codecs;
    match format.mime_type.container.as_str() {
        "webm" if codecs.iter().any(|c| c == "opus") => Some(0),
        "mp4" if codecs.iter().any(|c| c.starts_with("mp4a")) => Some(1),
        _ => None,
    }
}

/// The stream to download among those a video offers: the best kind, then the highest
/// bitrate of that kind.
fn choose_stream(formats: &[VideoFormat]) -> Option<&VideoFormat> {
    formats
        .iter()
        .filter(|f| is_audio_we_read(f))
        .min_by_key(|f| (stream_rank(f), std::cmp::Reverse(f.bitrate)))
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
        let options = |filter: rusty_ytdl::VideoSearchOptions| VideoOptions {
            quality: rusty_ytdl::VideoQuality::HighestAudio,
            filter,
            download_options: DownloadOptions {
                dl_chunk_size: Some(RANGE_BYTES),
            },
            request_options: RequestOptions {
                client: Some(client.clone()),
                // Retries back off for seconds each; one is enough to ride out a hiccup.
                max_retries: Some(1),
                ..Default::default()
            },
        };
        let any_we_read = rusty_ytdl::VideoSearchOptions::Custom(Arc::new(is_audio_we_read));
        let yt =
            Video::new_with_options(video.watch_url(), options(any_we_read)).map_err(describe)?;

        let info = self
            .guarded(listener, "the video page", yt.get_basic_info())
            .await?;
        let Some(chosen) = choose_stream(&info.formats) else {
            return Err(BackendError::Failed(
                "YouTube offered no Opus or AAC audio stream for this video".into(),
            ));
        };
        let (itag, extension) = (
            chosen.itag,
            if stream_rank(chosen) == Some(0) {
                "webm"
            } else {
                "m4a"
            },
        );
        tracing::info!(video = %video, itag, "downloading the audio stream");
        let title = Some(info.video_details.title.clone()).filter(|t| !t.trim().is_empty());

        let only_chosen =
            rusty_ytdl::VideoSearchOptions::Custom(Arc::new(move |f: &VideoFormat| f.itag == itag));
        let yt =
            Video::new_with_options(video.watch_url(), options(only_chosen)).map_err(describe)?;
        let stream = self
            .guarded(listener, "the audio stream", yt.stream())
            .await?;
        let total = Some(stream.content_length() as u64).filter(|&t| t > 0);
        let path = dir.join(format!("audio.{extension}"));
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
