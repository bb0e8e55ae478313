//! The download source without YouTube: fake backends for the order and the combined
//! error, a fake `yt-dlp` executable for the subprocess backend, and local proxies that
//! refuse or swallow connections for the built-in downloader's offline error.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::input::link::parse_video_link;

fn video() -> VideoId {
    parse_video_link("https://youtu.be/dQw4w9WgXcQ").unwrap().id
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<JobEvent>>,
    cancel_on_progress: bool,
    cancelled: AtomicBool,
}

impl JobListener for Recorder {
    fn on_event(&self, event: JobEvent) {
        if self.cancel_on_progress
            && matches!(event, JobEvent::DownloadingAudio { bytes, .. } if bytes > 0)
        {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        self.events.lock().unwrap().push(event);
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

impl Recorder {
    fn progress(&self) -> Vec<(u64, Option<u64>)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                JobEvent::DownloadingAudio { bytes, total, .. } => Some((*bytes, *total)),
                _ => None,
            })
            .collect()
    }
}

/// A backend that answers from a script and records that it was asked.
struct FakeBackend {
    name: &'static str,
    outcome: std::result::Result<&'static str, BackendError>,
    calls: &'static Mutex<Vec<&'static str>>,
}

impl Backend for FakeBackend {
    fn name(&self) -> &str {
        self.name
    }
    fn fetch(
        &self,
        _video: &VideoId,
        dir: &Path,
        listener: &dyn JobListener,
    ) -> std::result::Result<Fetched, BackendError> {
        self.calls.lock().unwrap().push(self.name);
        assert!(dir.is_dir(), "each backend gets an existing folder");
        match &self.outcome {
            Ok(title) => {
                let file = dir.join("audio.m4a");
                std::fs::write(&file, self.name.as_bytes()).unwrap();
                listener.on_event(JobEvent::DownloadingAudio {
                    video: "x".into(),
                    backend: self.name.into(),
                    bytes: 10,
                    total: Some(10),
                });
                Ok(Fetched {
                    file,
                    title: Some(title.to_string()),
                })
            }
            Err(e) => {
                std::fs::write(dir.join("audio.m4a.part"), b"half").unwrap();
                Err(e.clone())
            }
        }
    }
}

fn leak_calls() -> &'static Mutex<Vec<&'static str>> {
    Box::leak(Box::new(Mutex::new(Vec::new())))
}

fn no_partials_left(cache: &Path) {
    let left: Vec<_> = std::fs::read_dir(cache)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".partial"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary folders left behind: {left:?}");
}

#[test]
fn the_second_backend_is_tried_only_when_the_first_fails_and_a_download_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let calls = leak_calls();
    let source = LinkSource::new(
        cache.path().to_path_buf(),
        vec![
            Box::new(FakeBackend {
                name: "built-in downloader",
                outcome: Err(BackendError::Failed("YouTube answered HTTP 403".into())),
                calls,
            }),
            Box::new(FakeBackend {
                name: "yt-dlp",
                outcome: Ok("Never Gonna Give You Up"),
                calls,
            }),
        ],
    );
    let listener = Recorder::default();
    let audio = source.fetch(&video(), &listener).unwrap();
    assert_eq!(*calls.lock().unwrap(), ["built-in downloader", "yt-dlp"]);
    assert_eq!(audio.title, "Never Gonna Give You Up");
    assert!(!audio.from_cache);
    assert_eq!(audio.file, cache.path().join("dQw4w9WgXcQ.m4a"));
    assert_eq!(std::fs::read(&audio.file).unwrap(), b"yt-dlp");
    no_partials_left(cache.path());

    // The same video again: straight from the cache, no backend asked.
    let again = source.fetch(&video(), &Recorder::default()).unwrap();
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert!(again.from_cache);
    assert_eq!(again.file, audio.file);
    assert_eq!(again.title, audio.title);

    // A cache entry whose audio is gone is a miss, not an error.
    std::fs::remove_file(&audio.file).unwrap();
    assert!(source.cached(&video()).is_none());
}

#[test]
fn a_working_first_backend_means_the_second_is_never_run() {
    let cache = tempfile::tempdir().unwrap();
    let calls = leak_calls();
    let source = LinkSource::new(
        cache.path().to_path_buf(),
        vec![
            Box::new(FakeBackend {
                name: "built-in downloader",
                outcome: Ok("Song"),
                calls,
            }),
            Box::new(FakeBackend {
                name: "yt-dlp",
                outcome: Ok("Other"),
                calls,
            }),
        ],
    );
    let audio = source.fetch(&video(), &Recorder::default()).unwrap();
    assert_eq!(*calls.lock().unwrap(), ["built-in downloader"]);
    assert_eq!(audio.title, "Song");
}

#[test]
fn when_every_backend_fails_one_error_names_each_and_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let calls = leak_calls();
    let failing = |first: BackendError, second: BackendError| {
        LinkSource::new(
            cache.path().to_path_buf(),
            vec![
                Box::new(FakeBackend {
                    name: "built-in downloader",
                    outcome: Err(first),
                    calls,
                }) as Box<dyn Backend>,
                Box::new(FakeBackend {
                    name: "yt-dlp",
                    outcome: Err(second),
                    calls,
                }),
            ],
        )
    };
    let message = |source: LinkSource| match source.fetch(&video(), &Recorder::default()) {
        Err(EngineError::LinkDownload { message, failures }) => {
            assert_eq!(failures.len(), 2);
            message
        }
        other => panic!("expected a combined error, got {other:?}"),
    };

    let both = message(failing(
        BackendError::Failed("YouTube answered HTTP 403".into()),
        BackendError::Failed("Video unavailable".into()),
    ));
    assert!(
        both.contains("built-in downloader: YouTube answered HTTP 403")
            && both.contains("yt-dlp: Video unavailable")
            && both.contains("yt-dlp -U"),
        "{both}"
    );

    let missing = message(failing(
        BackendError::Failed("YouTube answered HTTP 403".into()),
        BackendError::NotInstalled("not installed".into()),
    ));
    assert!(
        missing.contains("yt-dlp: not installed") && missing.contains("Installing yt-dlp"),
        "{missing}"
    );

    let offline = message(failing(
        BackendError::Offline("cannot reach YouTube (dns error)".into()),
        BackendError::NotInstalled("not installed".into()),
    ));
    assert!(
        offline.starts_with("cannot reach YouTube") && offline.contains("offline"),
        "{offline}"
    );
    assert_eq!(calls.lock().unwrap().len(), 6);
    no_partials_left(cache.path());
    assert!(
        source_files(cache.path()).is_empty(),
        "nothing kept after failures"
    );
}

fn source_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn cancelling_in_the_first_backend_does_not_start_the_second() {
    let cache = tempfile::tempdir().unwrap();
    let calls = leak_calls();
    let source = LinkSource::new(
        cache.path().to_path_buf(),
        vec![
            Box::new(FakeBackend {
                name: "built-in downloader",
                outcome: Err(BackendError::Cancelled),
                calls,
            }),
            Box::new(FakeBackend {
                name: "yt-dlp",
                outcome: Ok("x"),
                calls,
            }),
        ],
    );
    assert!(matches!(
        source.fetch(&video(), &Recorder::default()),
        Err(EngineError::Cancelled)
    ));
    assert_eq!(*calls.lock().unwrap(), ["built-in downloader"]);
    no_partials_left(cache.path());
}

#[test]
fn yt_dlp_progress_lines_are_read_in_every_form_it_prints() {
    let mib = 1024.0 * 1024.0;
    // (line, the bytes and total it means)
    type Case<'a> = (&'a str, Option<(f64, Option<f64>)>);
    let cases: &[Case] = &[
        (
            "[download]  42.0% of    3.21MiB at    1.02MiB/s ETA 00:02",
            Some((0.42 * 3.21 * mib, Some(3.21 * mib))),
        ),
        (
            "[download]   0.0% of ~  10.00MiB at  Unknown B/s ETA Unknown",
            Some((0.0, Some(10.0 * mib))),
        ),
        (
            "[download]  50.0% of ~512.00KiB at  100.00KiB/s ETA 00:03 (frag 3/6)",
            Some((256.0 * 1024.0, Some(512.0 * 1024.0))),
        ),
        (
            "[download] 100% of    3.21MiB in 00:00:02 at 1.50MiB/s",
            Some((3.21 * mib, Some(3.21 * mib))),
        ),
        (
            "[download]  10.0% of 1.50GiB at 5.00MiB/s ETA 04:30",
            Some((0.1 * 1.5 * 1024.0 * mib, Some(1.5 * 1024.0 * mib))),
        ),
        (
            "[download]    1.00MiB at  500.00KiB/s (00:00:02)",
            Some((mib, None)),
        ),
        ("[download] Destination: /tmp/x/audio.m4a", None),
        (
            "[download] /tmp/x/audio.m4a has already been downloaded",
            None,
        ),
        ("[youtube] dQw4w9WgXcQ: Downloading webpage", None),
        ("[download]  abc% of 3MiB", None),
    ];
    for (line, expected) in cases {
        let got = parse_progress_line(line);
        match (got, expected) {
            (None, None) => {}
            (Some(got), Some((bytes, total))) => {
                assert!((got.bytes as f64 - bytes).abs() <= 1.0, "{line}: {got:?}");
                assert_eq!(got.total, total.map(|t| t.round() as u64), "{line}");
            }
            _ => panic!("{line}: got {got:?}, expected {expected:?}"),
        }
    }
}

/// A fake yt-dlp in its own folder, configured by `conf`.
#[cfg(unix)]
fn fake_ytdlp(dir: &Path, conf: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-yt-dlp.sh");
    let program = dir.join("yt-dlp");
    std::fs::copy(script, &program).unwrap();
    std::fs::write(dir.join("fake-yt-dlp.conf"), conf).unwrap();
    program
}

#[cfg(unix)]
fn some_audio(dir: &Path) -> PathBuf {
    // The bytes only need to be copied; the decoder is not involved here.
    let path = dir.join("song.m4a");
    std::fs::write(&path, vec![7u8; 300_000]).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn yt_dlp_downloads_with_progress_and_its_title() {
    let tools = tempfile::tempdir().unwrap();
    let audio = some_audio(tools.path());
    let program = fake_ytdlp(
        tools.path(),
        &format!(
            "AUDIO='{}'\nTITLE='Queen – Bohemian Rhapsody'\n",
            audio.display()
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    let source = LinkSource::new(
        cache.path().to_path_buf(),
        vec![Box::new(YtDlpBackend::new(Some(program)))],
    );
    let listener = Recorder::default();
    let fetched = source.fetch(&video(), &listener).unwrap();
    assert_eq!(fetched.title, "Queen – Bohemian Rhapsody");
    assert_eq!(
        std::fs::read(&fetched.file).unwrap(),
        std::fs::read(&audio).unwrap()
    );
    assert_eq!(fetched.file.extension().unwrap(), "m4a");

    let progress = listener.progress();
    let total = 300_000f64;
    // The start event, eight progress lines and the final 100 % line.
    assert_eq!(progress.len(), 10, "{progress:?}");
    let last = progress.last().unwrap();
    // yt-dlp prints sizes to two decimals of a MiB, so they are close, not exact.
    assert!((last.0 as f64 - total).abs() < 0.02 * total, "{last:?}");
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    let halfway = progress[5];
    assert!((halfway.0 as f64 / halfway.1.unwrap() as f64 - 0.5).abs() < 0.01);

    let args = std::fs::read_to_string(tools.path().join("args")).unwrap();
    for expected in [
        "--newline",
        "--no-playlist",
        "bestaudio[ext=m4a]",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    ] {
        assert!(args.contains(expected), "{expected} not in {args}");
    }
    no_partials_left(cache.path());
}

#[cfg(unix)]
#[test]
fn yt_dlp_failures_are_reported_in_its_own_words() {
    let tools = tempfile::tempdir().unwrap();
    let audio = some_audio(tools.path());
    let cache = tempfile::tempdir().unwrap();
    let run = |mode: &str| {
        let program = fake_ytdlp(
            tools.path(),
            &format!("AUDIO='{}'\nMODE={mode}\n", audio.display()),
        );
        YtDlpBackend::new(Some(program)).fetch(&video(), cache.path(), &Recorder::default())
    };
    assert_eq!(
        run("unavailable"),
        Err(BackendError::Failed(
            "Video unavailable. This video has been removed by the uploader".into()
        ))
    );
    match run("offline") {
        Err(BackendError::Offline(reason)) => {
            assert!(reason.contains("cannot reach YouTube"), "{reason}");
            assert!(
                reason.contains("Temporary failure in name resolution"),
                "{reason}"
            );
        }
        other => panic!("expected offline, got {other:?}"),
    }
    let missing = YtDlpBackend::new(Some(tools.path().join("nope"))).locate();
    assert!(
        matches!(&missing, Err(BackendError::NotInstalled(m)) if m.contains("nope")),
        "{missing:?}"
    );
}

#[cfg(unix)]
fn process_alive(pid_file: &Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[cfg(unix)]
#[test]
fn cancelling_kills_yt_dlp_and_keeps_nothing() {
    let tools = tempfile::tempdir().unwrap();
    let audio = some_audio(tools.path());
    let program = fake_ytdlp(
        tools.path(),
        &format!("AUDIO='{}'\nMODE=slow\nDELAY=0.3\n", audio.display()),
    );
    let cache = tempfile::tempdir().unwrap();
    let source = LinkSource::new(
        cache.path().to_path_buf(),
        vec![Box::new(YtDlpBackend::new(Some(program)))],
    );
    let listener = Recorder {
        cancel_on_progress: true,
        ..Default::default()
    };
    let started = Instant::now();
    assert!(matches!(
        source.fetch(&video(), &listener),
        Err(EngineError::Cancelled)
    ));
    // 32 lines at 0.3 s would take ~10 s; cancel lands right after the first one.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !process_alive(&tools.path().join("pid")),
        "yt-dlp still running"
    );
    no_partials_left(cache.path());
    assert!(source.cached(&video()).is_none());
}

#[cfg(unix)]
#[test]
fn a_silent_yt_dlp_is_stopped_after_the_stall_timeout() {
    let tools = tempfile::tempdir().unwrap();
    let program = fake_ytdlp(tools.path(), "AUDIO=/dev/null\nMODE=hang\n");
    let cache = tempfile::tempdir().unwrap();
    let backend = YtDlpBackend {
        program: Some(program),
        stall_timeout: Duration::from_secs(1),
    };
    let started = Instant::now();
    let outcome = backend.fetch(&video(), cache.path(), &Recorder::default());
    let took = started.elapsed();
    assert!(
        matches!(&outcome, Err(BackendError::Offline(m)) if m.contains("stopped responding")),
        "{outcome:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        !process_alive(&tools.path().join("pid")),
        "yt-dlp still running"
    );
}

/// A proxy address where nothing listens: connections are refused at once.
fn refusing_proxy() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A proxy that accepts connections and never answers, like a dead network path.
fn silent_proxy() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn the_built_in_downloader_reports_an_unreachable_youtube() {
    let backend = BuiltinBackend {
        proxy: Some(refusing_proxy()),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let outcome = backend.fetch(&video(), dir.path(), &Recorder::default());
    assert!(
        matches!(&outcome, Err(BackendError::Offline(m)) if m.contains("cannot reach YouTube")),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn offline_ends_in_one_clear_error_within_the_time_bound() {
    let cache = tempfile::tempdir().unwrap();
    let bound = Duration::from_secs(3);
    let source = LinkSource::new(
        cache.path().to_path_buf(),
        vec![
            Box::new(BuiltinBackend {
                connect_timeout: bound,
                stall_timeout: bound,
                proxy: Some(silent_proxy()),
            }),
            Box::new(YtDlpBackend::new(Some(cache.path().join("no-yt-dlp")))),
        ],
    );
    let started = Instant::now();
    let outcome = source.fetch(&video(), &Recorder::default());
    let took = started.elapsed();
    let message = match outcome {
        Err(e @ EngineError::LinkDownload { .. }) => e.to_string(),
        other => panic!("expected the combined error, got {other:?}"),
    };
    assert!(message.starts_with("cannot reach YouTube"), "{message}");
    assert!(message.contains("built-in downloader: "), "{message}");
    assert!(message.contains("yt-dlp: not found at"), "{message}");
    // The stall timeout, plus one retry's back-off, with room for a slow machine.
    assert!(took >= bound && took < bound * 4, "took {took:?}");
    no_partials_left(cache.path());
}

#[cfg(unix)]
#[test]
fn yt_dlp_is_asked_for_opus_first_and_falls_back_to_m4a() {
    let tools = tempfile::tempdir().unwrap();
    let m4a = some_audio(tools.path());
    let opus = tools.path().join("song.webm");
    std::fs::write(&opus, vec![9u8; 200_000]).unwrap();
    let fetch = |offers: &str| {
        let program = fake_ytdlp(
            tools.path(),
            &format!(
                "AUDIO='{}'\nOPUS='{}'\nOFFERS='{offers}'\n",
                m4a.display(),
                opus.display()
            ),
        );
        let cache = tempfile::tempdir().unwrap();
        let source = LinkSource::new(
            cache.path().to_path_buf(),
            vec![Box::new(YtDlpBackend::new(Some(program)))],
        );
        let fetched = source.fetch(&video(), &Recorder::default());
        let args = std::fs::read_to_string(tools.path().join("args")).unwrap();
        (
            fetched.map(|f| (f.file.clone(), std::fs::read(&f.file).unwrap())),
            args,
            cache,
        )
    };

    // Both streams offered: the Opus one (itag 251) is downloaded, as WebM.
    let (fetched, args, _cache) = fetch("251 140");
    let (file, bytes) = fetched.unwrap();
    assert_eq!(file.extension().unwrap(), "webm");
    assert_eq!(bytes, std::fs::read(&opus).unwrap());
    assert!(args.contains(super::ytdlp::FORMAT_CHOICE), "{args}");
    assert!(
        super::ytdlp::FORMAT_CHOICE.starts_with("bestaudio[acodec=opus]"),
        "Opus is asked for first"
    );

    // Only AAC offered: the M4A is downloaded.
    let (fetched, _, _cache) = fetch("140");
    let (file, bytes) = fetched.unwrap();
    assert_eq!(file.extension().unwrap(), "m4a");
    assert_eq!(bytes, std::fs::read(&m4a).unwrap());

    // Neither: yt-dlp's own words come through.
    let (fetched, _, _cache) = fetch("18");
    let message = fetched.unwrap_err().to_string();
    assert!(
        message.contains("Requested format is not available"),
        "{message}"
    );
}
