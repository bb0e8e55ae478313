//! The job queue end to end with the small fixture model standing in for htdemucs in the
//! model store: jobs run in order, report progress, persist, cancel, retry and fail clearly.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fixture_store;
use stemdeck_engine::input::link::parse_video_link;
use stemdeck_engine::input::source::{BuiltinBackend, LinkSource, YtDlpBackend};
use stemdeck_engine::jobs::library::{JobStage, Library};
use stemdeck_engine::jobs::queue::{JobQueue, JobUpdate, QueueError, QueueSources};
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::pipeline::cache::ResultCache;

/// A proxy address where nothing listens, so the built-in downloader fails at once, as
/// it does offline, and the queue falls back to yt-dlp.
fn refusing_proxy() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

/// A queue over `dir`, whose links go to the built-in downloader (unreachable) and then
/// to `ytdlp`.
fn start_queue(dir: &Path, ytdlp: Option<PathBuf>) -> JobQueue {
    let (library, _) = Library::open(&dir.join("data"));
    let links = LinkSource::new(
        dir.join("cache/downloads"),
        vec![
            Box::new(BuiltinBackend {
                proxy: Some(refusing_proxy()),
                ..Default::default()
            }),
            Box::new(YtDlpBackend::new(Some(
                ytdlp.unwrap_or_else(|| dir.join("no-yt-dlp")),
            ))),
        ],
    );
    JobQueue::start(
        library,
        fixture_store(dir),
        dir.join("out"),
        QueueSources {
            links,
            results: ResultCache::new(dir.join("cache/results.json")),
        },
    )
}

fn song(dir: &Path, name: &str, seconds: f32) -> PathBuf {
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..(44100.0 * seconds) as usize {
        let v = ((i as f32 * 0.03).sin() * 8000.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v / 2).unwrap();
    }
    w.finalize().unwrap();
    path
}

async fn until(
    updates: &mut tokio::sync::broadcast::Receiver<JobUpdate>,
    id: u64,
    stage: JobStage,
) -> Vec<JobUpdate> {
    let mut seen = Vec::new();
    loop {
        let update = tokio::time::timeout(Duration::from_secs(120), updates.recv())
            .await
            .expect("update in time")
            .unwrap();
        if update.id == id {
            seen.push(update.clone());
            if update.stage == stage {
                return seen;
            }
            assert!(
                !update.stage.is_finished() || update.stage == stage,
                "job ended as {:?}: {:?}",
                update.stage,
                update.error
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_job_runs_to_done_with_progress_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let queue = start_queue(dir.path(), None);
    let mut updates = queue.subscribe();
    let input = song(dir.path(), "Song: One.wav", 1.5);
    let job = queue.add_file(&input, JobSettings::default()).unwrap();
    assert_eq!(job.title, "Song: One");
    let seen = until(&mut updates, job.id, JobStage::Done).await;
    let stages: Vec<JobStage> = seen.iter().map(|u| u.stage).collect();
    for stage in [
        JobStage::Queued,
        JobStage::LoadingModel,
        JobStage::Decoding,
        JobStage::Separating,
        JobStage::Writing,
        JobStage::Analysing,
        JobStage::Done,
    ] {
        assert!(stages.contains(&stage), "{stage:?} missing from {stages:?}");
    }
    let progress: Vec<f64> = seen
        .iter()
        .filter(|u| u.stage != JobStage::Queued)
        .map(|u| u.progress)
        .collect();
    assert!(
        progress.windows(2).all(|w| w[1] >= w[0] - 1e-9),
        "progress goes forward: {progress:?}"
    );
    assert_eq!(seen.last().unwrap().progress, 1.0);

    let done = queue.job(job.id).unwrap();
    assert_eq!(done.stems.len(), 4);
    let folder = done.output_dir.clone().unwrap();
    assert_eq!(
        folder,
        dir.path().join("out").join("Song_ One"),
        "the title is made safe as a folder name"
    );
    assert!(
        done.stems
            .iter()
            .all(|s| s.path.is_file() && s.path.starts_with(&folder))
    );

    // Measured after writing: a loudness for the mix and for each stem.
    let analysis = done.analysis.clone().expect("the song is analysed");
    assert_eq!(analysis.stem_loudness.len(), 4);
    assert!(
        analysis.mix_loudness.integrated_lufs.is_some(),
        "{analysis:?}"
    );

    // The finished job reopens from disk with its stems, without running again.
    let (reopened, _) = Library::open(&dir.path().join("data"));
    let again = reopened.get(job.id).unwrap();
    assert_eq!(again.stage, JobStage::Done);
    assert_eq!(again.stems, done.stems);
    assert_eq!(
        again.analysis, done.analysis,
        "the analysis is kept in the library"
    );
    assert!(reopened.next_queued().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_leaving_nothing_and_retry_runs_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let queue = start_queue(dir.path(), None);
    let mut updates = queue.subscribe();
    let job = queue
        .add_file(&song(dir.path(), "long.wav", 30.0), JobSettings::default())
        .unwrap();
    until(&mut updates, job.id, JobStage::Separating).await;
    queue.cancel(job.id).unwrap();
    until(&mut updates, job.id, JobStage::Cancelled).await;
    assert!(
        !dir.path().join("out/long").exists(),
        "no half-written stems"
    );
    assert!(queue.retry(job.id).is_ok());
    until(&mut updates, job.id, JobStage::Done).await;
    assert_eq!(queue.job(job.id).unwrap().stems.len(), 4);
    assert!(matches!(queue.retry(job.id), Err(QueueError::NotRetryable(id)) if id == job.id));
    queue.remove(job.id).unwrap();
    assert!(queue.jobs().is_empty());
    assert!(
        dir.path().join("out/long/vocals.wav").is_file(),
        "removing a job keeps the user's files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_no_backend_can_fetch_fails_naming_both_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let queue = start_queue(dir.path(), None);
    let mut updates = queue.subscribe();
    let link = parse_video_link("https://youtu.be/dQw4w9WgXcQ").unwrap();
    let job = queue.add_link(&link, JobSettings::default()).unwrap();
    assert_eq!(job.title, "https://youtu.be/dQw4w9WgXcQ");
    let seen = until(&mut updates, job.id, JobStage::Failed).await;
    assert!(seen.iter().any(|u| u.stage == JobStage::Downloading));
    assert!(
        seen.last().unwrap().can_retry,
        "a failed download may work later"
    );
    let error = seen.last().unwrap().error.clone().unwrap();
    assert!(
        error.contains("built-in downloader: cannot reach YouTube")
            && error.contains("yt-dlp: not found at"),
        "{error}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "no folder for a failed download"
    );

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "lyrics").unwrap();
    let err = queue
        .add_file(&notes, JobSettings::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("notes.txt") && err.contains("not an audio file Stemdeck can read"),
        "{err}"
    );
    let err = queue
        .add_file(dir.path(), JobSettings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("folder"), "{err}");
    let err = queue
        .add_file(&dir.path().join("gone.mp3"), JobSettings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("file not found"), "{err}");
    assert_eq!(queue.jobs().len(), 1);
}

/// A real AAC file in an M4A container, as YouTube serves it.
fn m4a_song(dir: &Path) -> PathBuf {
    let wav = song(dir, "source.wav", 2.0);
    let m4a = dir.join("source.m4a");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-c:a", "aac", "-b:a", "128k"])
        .arg(&m4a)
        .status()
        .expect("ffmpeg is needed for this test (apt-get install ffmpeg)");
    assert!(status.success());
    m4a
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_downloads_through_the_fallback_separates_and_is_then_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let program = tools.join("yt-dlp");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-yt-dlp.sh"),
        &program,
    )
    .unwrap();
    let audio = m4a_song(dir.path());
    std::fs::write(
        tools.join("fake-yt-dlp.conf"),
        format!("AUDIO='{}'\nTITLE='Fake Song: Live?'\n", audio.display()),
    )
    .unwrap();
    let queue = start_queue(dir.path(), Some(program));
    let mut updates = queue.subscribe();

    let link = parse_video_link("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s").unwrap();
    let job = queue.add_link(&link, JobSettings::default()).unwrap();
    let seen = until(&mut updates, job.id, JobStage::Done).await;
    let downloads: Vec<(u64, Option<u64>)> = seen
        .iter()
        .filter(|u| u.stage == JobStage::Downloading)
        .filter_map(|u| u.download)
        .collect();
    let size = std::fs::metadata(&audio).unwrap().len();
    assert!(downloads.len() >= 8, "{downloads:?}");
    let last = downloads.last().unwrap();
    assert!(
        last.1.is_some_and(|t| t.abs_diff(size) < size / 50 + 6000),
        "{last:?} vs {size}"
    );
    let stages: Vec<JobStage> = seen.iter().map(|u| u.stage).collect();
    let first_download = stages
        .iter()
        .position(|s| *s == JobStage::Downloading)
        .unwrap();
    let first_separating = stages
        .iter()
        .position(|s| *s == JobStage::Separating)
        .unwrap();
    assert!(first_download < first_separating, "{stages:?}");
    assert_eq!(seen.last().unwrap().title, "Fake Song: Live?");

    let done = queue.job(job.id).unwrap();
    assert_eq!(done.title, "Fake Song: Live?");
    assert!(!done.from_cache);
    assert_eq!(
        done.output_dir.clone().unwrap(),
        dir.path().join("out/Fake Song_ Live_")
    );
    assert_eq!(done.stems.len(), 4);
    assert!(done.stems.iter().all(|s| s.path.is_file()));
    assert_eq!(
        std::fs::read_to_string(tools.join("runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );

    // The same video in another form: titled at once, done from the cache.
    let bare = parse_video_link("dQw4w9WgXcQ").unwrap();
    let again = queue.add_link(&bare, JobSettings::default()).unwrap();
    assert_eq!(again.title, "Fake Song: Live?");
    let seen = until(&mut updates, again.id, JobStage::Done).await;
    assert!(
        seen.iter()
            .all(|u| u.stage != JobStage::Downloading && u.stage != JobStage::Separating)
    );
    let cached = queue.job(again.id).unwrap();
    assert!(cached.from_cache && seen.last().unwrap().from_cache);
    assert_eq!(cached.stems, done.stems);
    assert_eq!(
        std::fs::read_to_string(tools.join("runs"))
            .unwrap()
            .lines()
            .count(),
        1,
        "yt-dlp was not run again"
    );

    // Other settings are a different result: separated again, from the downloaded audio.
    let wider = JobSettings {
        overlap: 0.5,
        ..Default::default()
    };
    let other = queue.add_link(&bare, wider).unwrap();
    let seen = until(&mut updates, other.id, JobStage::Done).await;
    assert!(seen.iter().any(|u| u.stage == JobStage::Separating));
    assert!(seen.iter().all(|u| u.stage != JobStage::Downloading));
    let other = queue.job(other.id).unwrap();
    assert!(!other.from_cache);
    assert_ne!(other.output_dir, done.output_dir);
    assert_eq!(
        std::fs::read_to_string(tools.join("runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_the_same_contents_is_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let queue = start_queue(dir.path(), None);
    let mut updates = queue.subscribe();
    let first = song(dir.path(), "take.wav", 1.0);
    let job = queue.add_file(&first, JobSettings::default()).unwrap();
    until(&mut updates, job.id, JobStage::Done).await;
    let copy = dir.path().join("take (copy).wav");
    std::fs::copy(&first, &copy).unwrap();
    let again = queue.add_file(&copy, JobSettings::default()).unwrap();
    let seen = until(&mut updates, again.id, JobStage::Done).await;
    assert!(seen.iter().all(|u| u.stage != JobStage::Separating));
    let (a, b) = (queue.job(job.id).unwrap(), queue.job(again.id).unwrap());
    assert!(b.from_cache && !a.from_cache);
    assert_eq!(a.stems, b.stems);
    assert!(
        seen.iter().all(|u| u.stage != JobStage::Analysing),
        "the analysis is part of the cached result"
    );
    assert_eq!(a.analysis, b.analysis);

    // Deleting a stem makes the next identical job separate again.
    std::fs::remove_file(&a.stems[0].path).unwrap();
    let third = queue.add_file(&copy, JobSettings::default()).unwrap();
    let seen = until(&mut updates, third.id, JobStage::Done).await;
    assert!(seen.iter().any(|u| u.stage == JobStage::Separating));
    assert!(!queue.job(third.id).unwrap().from_cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_handed_to_a_shared_queue_wait_for_a_retry_when_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut library, _) = Library::open(&dir.path().join("data"));
    let settings = JobSettings::default();
    let source = |name: &str| stemdeck_engine::jobs::library::JobSource::File {
        path: dir.path().join(name),
    };
    let waiting = library.add("waiting".into(), source("a.wav"), settings.clone());
    let running = library.add("running".into(), source("b.wav"), settings.clone());
    let local = library.add("local".into(), source("c.wav"), settings);
    library.get_mut(waiting.id).unwrap().remote_run = Some(11);
    let on_a_worker = library.get_mut(running.id).unwrap();
    on_a_worker.remote_run = Some(12);
    on_a_worker.stage = JobStage::Separating;
    library.save().unwrap();

    // Reopened, the handed-over jobs are as they were: their workers may still run them.
    let (reopened, _) = Library::open(&dir.path().join("data"));
    assert_eq!(
        reopened.get(running.id).unwrap().stage,
        JobStage::Separating
    );
    assert_eq!(reopened.handed_over().len(), 2);
    assert_eq!(reopened.next_queued().unwrap().id, local.id);

    // A queue that runs jobs here cannot follow them: they say so and wait for a retry.
    let queue = start_queue(dir.path(), None);
    for id in [waiting.id, running.id] {
        let job = queue.job(id).unwrap();
        assert_eq!(job.stage, JobStage::Interrupted);
        assert_eq!(job.remote_run, None);
        assert!(job.can_retry);
        assert!(job.error.unwrap().contains("shared queue"));
    }
}
