//! Load on the app's engine: 20 jobs queued at once, with cancels, retries and removals
//! while they run, and the app closed and started again in the middle. Every job ends as
//! it should, and the library lists exactly the jobs that remain, with complete stems.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fixture_store;
use stemdeck_engine::input::source::LinkSource;
use stemdeck_engine::jobs::library::{JobStage, Library};
use stemdeck_engine::jobs::queue::{JobQueue, QueueError, QueueSources};
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::pipeline::cache::ResultCache;

const JOBS: usize = 20;
const SECONDS: f32 = 2.0;

fn start(dir: &Path) -> JobQueue {
    let (library, warning) = Library::open(&dir.join("data"));
    assert!(warning.is_none(), "{warning:?}");
    JobQueue::start(
        library,
        fixture_store(dir),
        dir.join("out"),
        QueueSources {
            links: LinkSource::new(dir.join("cache/downloads"), Vec::new()),
            results: ResultCache::new(dir.join("cache/results.json")),
        },
    )
}

/// A different two-second song for each `n`, so that no job is answered from the cache.
fn song(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("in/Song {n:02}.wav"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    let pitch = 0.02 + n as f32 * 0.001;
    for i in 0..(44100.0 * SECONDS) as usize {
        let v = ((i as f32 * pitch).sin() * 8000.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v / 2).unwrap();
    }
    w.finalize().unwrap();
    path
}

/// Waits until `check` holds for the queue's jobs.
fn wait_for(
    queue: &JobQueue,
    what: &str,
    check: impl Fn(&[stemdeck_engine::jobs::library::Job]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !check(&queue.jobs()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stage_of(queue: &JobQueue, id: u64) -> JobStage {
    queue.job(id).unwrap().stage
}

fn wav_frames(path: &Path) -> usize {
    let reader = hound::WavReader::open(path).unwrap();
    let frames = reader.duration() as usize;
    assert_eq!(
        reader.into_samples::<i16>().filter(Result::is_ok).count(),
        frames * 2,
        "{} is complete",
        path.display()
    );
    frames
}

#[test]
fn twenty_jobs_with_cancels_retries_removals_and_a_restart_all_end_as_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let queue = runtime.block_on(async { start(dir.path()) });

    // A damaged song among them: it fails, and says a retry cannot help.
    let damaged = dir.path().join("in/Damaged.wav");
    let ids: Vec<u64> = (0..JOBS)
        .map(|n| {
            let path = song(dir.path(), n);
            if n == 7 {
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
                return queue.add_file(&damaged, JobSettings::default()).unwrap().id;
            }
            queue.add_file(&path, JobSettings::default()).unwrap().id
        })
        .collect();
    let started = Instant::now();
    // What each job must end as.
    let mut expected: BTreeMap<u64, Option<JobStage>> =
        ids.iter().map(|&id| (id, Some(JobStage::Done))).collect();
    expected.insert(ids[7], Some(JobStage::Failed));

    // The first job is cancelled while it separates, then retried: it goes to the back.
    wait_for(&queue, "the first job to separate", |_| {
        stage_of(&queue, ids[0]) == JobStage::Separating
    });
    queue.cancel(ids[0]).unwrap();
    wait_for(&queue, "the cancel", |_| {
        stage_of(&queue, ids[0]) == JobStage::Cancelled
    });
    queue.retry(ids[0]).unwrap();
    // Queued ones: two cancelled for good, one cancelled and retried, two removed.
    for &i in &[12, 15] {
        queue.cancel(ids[i]).unwrap();
        expected.insert(ids[i], Some(JobStage::Cancelled));
    }
    queue.cancel(ids[13]).unwrap();
    queue.retry(ids[13]).unwrap();
    for &i in &[16, 18] {
        queue.remove(ids[i]).unwrap();
        expected.insert(ids[i], None);
    }
    // A running job removed: it stops and is gone.
    wait_for(&queue, "job 3 to run", |_| {
        matches!(
            stage_of(&queue, ids[3]),
            JobStage::Separating | JobStage::Writing | JobStage::Done
        )
    });
    let _ = queue.remove(ids[3]);
    expected.insert(ids[3], None);

    // Closed in the middle: the running job is cancelled as the app does on quit, and the
    // queue is picked up by the next start.
    wait_for(&queue, "the damaged song to fail", |_| {
        stage_of(&queue, ids[7]) == JobStage::Failed
    });
    let failed = queue.job(ids[7]).unwrap();
    assert!(
        !failed.can_retry,
        "a damaged file cannot be helped by a retry"
    );
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("truncated or damaged"),
        "{failed:?}"
    );
    assert!(matches!(
        queue.retry(ids[7]),
        Err(QueueError::RetryCannotHelp { .. })
    ));
    let running: Vec<u64> = queue
        .jobs()
        .iter()
        .filter(|j| !j.stage.is_finished() && j.stage != JobStage::Queued)
        .map(|j| j.id)
        .collect();
    for &id in &running {
        queue.cancel(id).unwrap();
    }
    wait_for(&queue, "the running job to stop", |jobs| {
        jobs.iter()
            .all(|j| j.stage.is_finished() || j.stage == JobStage::Queued)
    });
    drop(queue);
    runtime.shutdown_timeout(Duration::from_secs(30));
    let done_before = Library::open(&dir.path().join("data"))
        .0
        .jobs()
        .iter()
        .filter(|j| j.stage == JobStage::Done)
        .count();
    println!(
        "restart after {:.1} s with {done_before} done",
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let queue = runtime.block_on(async { start(dir.path()) });
    // The job stopped by the close is retried after the restart.
    for &id in &running {
        assert_eq!(stage_of(&queue, id), JobStage::Cancelled);
        queue.retry(id).unwrap();
    }
    wait_for(&queue, "every job to end", |jobs| {
        jobs.iter().all(|j| j.stage.is_finished())
    });
    let elapsed = started.elapsed().as_secs_f64();

    let jobs = queue.jobs();
    let listed: BTreeMap<u64, JobStage> = jobs.iter().map(|j| (j.id, j.stage)).collect();
    let wanted: BTreeMap<u64, JobStage> = expected
        .iter()
        .filter_map(|(&id, stage)| stage.map(|s| (id, s)))
        .collect();
    assert_eq!(listed, wanted, "the library lists exactly what it should");
    let frames = (44100.0 * SECONDS) as usize;
    let mut folders = Vec::new();
    for job in jobs.iter().filter(|j| j.stage == JobStage::Done) {
        assert_eq!(job.stems.len(), 4, "{job:?}");
        for stem in &job.stems {
            assert_eq!(wav_frames(&stem.path), frames, "{}", stem.path.display());
        }
        assert!(job.missing_stems.is_empty());
        folders.push(job.output_dir.clone().unwrap());
    }
    // Only finished songs have folders, and nothing half-written is anywhere.
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    on_disk.sort();
    folders.sort();
    let removed_but_finished = on_disk.len() - folders.len();
    assert!(
        removed_but_finished <= 1,
        "only the removed running job may have finished its folder: {on_disk:?}"
    );
    for folder in &on_disk {
        for entry in std::fs::read_dir(folder).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.'),
                "{name} left in {}",
                folder.display()
            );
        }
    }
    let done = listed.values().filter(|s| **s == JobStage::Done).count();
    println!(
        "{JOBS} jobs: {done} done, {} cancelled, 1 failed (no retry offered), 3 removed, 1 restart; {elapsed:.1} s",
        listed
            .values()
            .filter(|s| **s == JobStage::Cancelled)
            .count()
    );
}
