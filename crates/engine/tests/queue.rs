//! The job queue end to end with the small fixture model standing in for htdemucs in the
//! model store: jobs run in order, report progress, persist, cancel, retry and fail clearly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stemdeck_engine::ModelStore;
use stemdeck_engine::library::{JobStage, Library};
use stemdeck_engine::queue::{JobQueue, JobUpdate, QueueError};
use stemdeck_engine::settings::JobSettings;

fn fixture_store(dir: &Path) -> ModelStore {
    let store = dir.join("models");
    std::fs::create_dir_all(&store).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../demucs/tests/fixtures/tiny_htdemucs_th.fixture");
    std::fs::copy(fixture, store.join("955717e8-8726e21a.th")).unwrap();
    ModelStore::with_dirs(vec![store])
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
    let (library, _) = Library::open(&dir.path().join("data"));
    let queue = JobQueue::start(library, fixture_store(dir.path()), dir.path().join("out"));
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

    // The finished job reopens from disk with its stems, without running again.
    let (reopened, _) = Library::open(&dir.path().join("data"));
    let again = reopened.get(job.id).unwrap();
    assert_eq!(again.stage, JobStage::Done);
    assert_eq!(again.stems, done.stems);
    assert!(reopened.next_queued().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_leaving_nothing_and_retry_runs_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (library, _) = Library::open(&dir.path().join("data"));
    let queue = JobQueue::start(library, fixture_store(dir.path()), dir.path().join("out"));
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
    assert_eq!(queue.retry(job.id), Ok(()));
    until(&mut updates, job.id, JobStage::Done).await;
    assert_eq!(queue.job(job.id).unwrap().stems.len(), 4);
    assert_eq!(queue.retry(job.id), Err(QueueError::NotRetryable(job.id)));
    queue.remove(job.id).unwrap();
    assert!(queue.jobs().is_empty());
    assert!(
        dir.path().join("out/long/vocals.wav").is_file(),
        "removing a job keeps the user's files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_fail_clearly_and_unsupported_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (library, _) = Library::open(&dir.path().join("data"));
    let queue = JobQueue::start(library, fixture_store(dir.path()), dir.path().join("out"));
    let mut updates = queue.subscribe();
    let job = queue
        .add_link("https://youtu.be/dQw4w9WgXcQ", JobSettings::default())
        .unwrap();
    let seen = until(&mut updates, job.id, JobStage::Failed).await;
    let error = seen.last().unwrap().error.clone().unwrap();
    assert!(error.contains("not available yet"), "{error}");

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "lyrics").unwrap();
    let err = queue
        .add_file(&notes, JobSettings::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("notes.txt") && err.contains(".txt files are not audio"),
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
