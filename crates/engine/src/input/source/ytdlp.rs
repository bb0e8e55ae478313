//! yt-dlp as a subprocess: asked for an M4A audio stream, its `[download]` progress lines
//! read as they come, and the process killed on cancel or when it stops talking.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{BackendError, DEFAULT_STALL_TIMEOUT, Fetched, sounds_offline};
use crate::events::{JobEvent, JobListener};
use crate::input::link::VideoId;

#[derive(Debug, Clone)]
pub struct YtDlpBackend {
    /// The configured program; `None` looks for `yt-dlp` on `PATH`.
    pub program: Option<PathBuf>,
    /// The process is killed after this long without printing anything.
    pub stall_timeout: Duration,
}

impl YtDlpBackend {
    pub fn new(program: Option<PathBuf>) -> Self {
        Self {
            program,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }

    /// The yt-dlp this backend would run.
    pub fn locate(&self) -> Result<PathBuf, BackendError> {
        match &self.program {
            Some(path) if path.is_file() => Ok(path.clone()),
            Some(path) => Err(BackendError::NotInstalled(format!(
                "not found at {}",
                path.display()
            ))),
            None => which::which("yt-dlp")
                .map_err(|_| BackendError::NotInstalled("not installed".into())),
        }
    }
}

/// Where one `[download]` line says the download is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineProgress {
    pub bytes: u64,
    pub total: Option<u64>,
}

/// Reads yt-dlp's progress line (`[download]  42.0% of ~  3.21MiB at  1.02MiB/s ETA
/// 00:02`, or `[download]   1.00MiB at ...` when the size is unknown).
pub fn parse_progress_line(line: &str) -> Option<LineProgress> {
    let rest = line.trim().strip_prefix("[download]")?.trim_start();
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    if let Some(percent) = first.strip_suffix('%') {
        let percent: f64 = percent.parse().ok()?;
        if words.next()? != "of" {
            return None;
        }
        let mut size = words.next()?;
        if size == "~" {
            size = words.next()?;
        }
        let size = size.trim_start_matches('~');
        let total = parse_size(size)?;
        let bytes = (total as f64 * (percent / 100.0).clamp(0.0, 1.0)).round() as u64;
        Some(LineProgress {
            bytes,
            total: Some(total),
        })
    } else {
        // Only a size followed by "at" is progress; "Destination: ..." and other notes
        // are not.
        let bytes = parse_size(first)?;
        (words.next()? == "at").then_some(LineProgress { bytes, total: None })
    }
}

/// `3.21MiB`, `512.00KiB`, `1.2GB`, `900B` as bytes.
fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

/// Kills the process unless it was waited for, so no yt-dlp outlives its job.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Output {
    Stdout(String),
    Stderr(String),
}

fn forward_lines(
    reader: impl Read + Send + 'static,
    sender: mpsc::Sender<Output>,
    wrap: fn(String) -> Output,
) {
    std::thread::spawn(move || {
        // yt-dlp ends lines with \r on some platforms even with --newline.
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            for part in String::from_utf8_lossy(&line).split('\r') {
                let part = part.trim_end();
                if !part.is_empty() && sender.send(wrap(part.to_string())).is_err() {
                    return;
                }
            }
            line.clear();
        }
    });
}

/// The audio stream asked for: Opus (YouTube's itag 251, about 160 kbps and the better
/// encode) when the video has it, else AAC in M4A (itag 140, 128 kbps); audio only, so
/// nothing has to be merged.
pub const FORMAT_CHOICE: &str = "bestaudio[acodec=opus]/bestaudio[ext=m4a]/bestaudio[acodec^=mp4a]";

impl super::Backend for YtDlpBackend {
    fn name(&self) -> &str {
        "yt-dlp"
    }

    fn fetch(
        &self,
        video: &VideoId,
        dir: &Path,
        listener: &dyn JobListener,
    ) -> Result<Fetched, BackendError> {
        let program = self.locate()?;
        let template = dir.join("audio.%(ext)s");
        let mut child = Command::new(&program)
            .arg("--ignore-config")
            .arg("--newline")
            .arg("--no-playlist")
            .args(["--format", FORMAT_CHOICE])
            .args(["--socket-timeout", "15", "--retries", "3"])
            .arg("--write-info-json")
            .arg("--no-mtime")
            .arg("--output")
            .arg(&template)
            .arg("--")
            .arg(video.watch_url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                BackendError::NotInstalled(format!("cannot run {} ({e})", program.display()))
            })?;
        let (sender, lines) = mpsc::channel();
        forward_lines(
            child.stdout.take().expect("piped"),
            sender.clone(),
            Output::Stdout,
        );
        forward_lines(child.stderr.take().expect("piped"), sender, Output::Stderr);
        let mut child = ChildGuard(Some(child));

        let mut errors: Vec<String> = Vec::new();
        let mut last_stderr = None;
        let mut last_output = Instant::now();
        loop {
            if listener.is_cancelled() {
                child.kill();
                return Err(BackendError::Cancelled);
            }
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(Output::Stdout(line)) => {
                    last_output = Instant::now();
                    if let Some(progress) = parse_progress_line(&line) {
                        listener.on_event(JobEvent::DownloadingAudio {
                            video: video.to_string(),
                            backend: "yt-dlp".into(),
                            bytes: progress.bytes,
                            total: progress.total,
                        });
                    }
                }
                Ok(Output::Stderr(line)) => {
                    last_output = Instant::now();
                    if let Some(error) = line.strip_prefix("ERROR:") {
                        errors.push(error.trim().to_string());
                    }
                    last_stderr = Some(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if last_output.elapsed() > self.stall_timeout {
                        child.kill();
                        return Err(BackendError::Offline(format!(
                            "stopped responding (nothing for {} s), so it was stopped",
                            self.stall_timeout.as_secs()
                        )));
                    }
                }
                // Both pipes closed: the process has finished.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child
            .0
            .take()
            .expect("child still held")
            .wait()
            .map_err(|e| BackendError::Failed(format!("lost track of yt-dlp ({e})")))?;
        if !status.success() {
            let reason = errors
                .last()
                .cloned()
                .or(last_stderr)
                .unwrap_or_else(|| format!("exited with {status} without saying why"));
            let reason = strip_extractor_prefix(&reason, video);
            return Err(if sounds_offline(&reason) {
                BackendError::Offline(format!("cannot reach YouTube ({reason})"))
            } else {
                BackendError::Failed(reason)
            });
        }
        let file = find_audio(dir)
            .ok_or_else(|| BackendError::Failed("finished but wrote no audio file".into()))?;
        Ok(Fetched {
            file,
            title: read_title(&dir.join("audio.info.json")),
        })
    }
}

/// `[youtube] ID: Video unavailable` → `Video unavailable`.
fn strip_extractor_prefix(reason: &str, video: &VideoId) -> String {
    let marker = format!("{video}: ");
    match reason.find(&marker) {
        Some(at) if reason.starts_with('[') => reason[at + marker.len()..].to_string(),
        _ => reason.to_string(),
    }
}

fn find_audio(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| {
                n.starts_with("audio.")
                    && !n.ends_with(".json")
                    && !n.ends_with(".part")
                    && !n.ends_with(".ytdl")
            }) && p.is_file()
        })
}

fn read_title(info: &Path) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(info).ok()?).ok()?;
    json.get("title")?.as_str().map(str::to_string)
}
