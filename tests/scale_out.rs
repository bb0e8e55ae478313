//! Many machines on one queue, as processes: a real `redis-server` (AOF on), one
//! `stemdeck serve --queue` and `stemdeck worker`s with the small fixture model, all
//! sharing one results folder. Jobs go in over HTTP, as a client would send them.

mod common;
mod redis_server;
mod running_server;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use running_server::{Server, offline, read_events, song_wav};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(240);
/// Short, so that a killed worker's job is taken over quickly.
const CLAIM_TIMEOUT: &str = "3";

/// A folder, a Redis and the shared results folder (or a bucket) for one test.
struct Cluster {
    dir: PathBuf,
    redis: RedisServer,
    shared: PathBuf,
    /// What `--results` names: the shared folder, or a bucket.
    results: String,
    /// For every process: a bucket's keys and endpoint.
    env: Vec<(String, String)>,
}

impl Cluster {
    fn new(dir: &Path) -> Self {
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        Self {
            redis: RedisServer::start(&dir.join("redis")),
            dir: dir.to_owned(),
            results: shared.to_str().unwrap().to_owned(),
            shared,
            env: Vec::new(),
        }
    }

    fn serve(&self) -> Server {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Server::start_with(
            &self.dir,
            &["--queue", &self.redis.url(), "--results", &self.results],
            &env,
        )
    }

    /// A worker with the fixture model, or (`with_model` false) with none and no way to
    /// download one.
    fn worker(&self, id: &str, with_model: bool) -> Worker {
        self.worker_with(id, with_model, CLAIM_TIMEOUT)
    }

    fn worker_with(&self, id: &str, with_model: bool, claim_timeout: &str) -> Worker {
        let models = if with_model {
            self.dir.join("models") // where `serve` put the fixture
        } else {
            let empty = self.dir.join(format!("no-models-{id}"));
            std::fs::create_dir_all(&empty).unwrap();
            empty
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stemdeck"));
        cmd.args(["worker", "--queue", &self.redis.url(), "--results"])
            .arg(&self.results)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["--id", id, "--claim-timeout", claim_timeout, "--data-dir"])
            .arg(self.dir.join(format!("worker-{id}")))
            .env("STEMDECK_MODEL_DIR", &models)
            .env("STEMDECK_CACHE_DIR", self.dir.join(format!("cache-{id}")))
            .env("RUST_LOG", "info")
            .env("PATH", "/usr/bin:/bin")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        offline(&mut cmd);
        if !with_model {
            // The cache folder is the store's second place: keep it empty too.
            cmd.env("XDG_CACHE_HOME", self.dir.join(format!("xdg-{id}")));
        }
        let mut child = cmd.spawn().expect("stemdeck worker starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains("is taking jobs") {
                        let _ = ready.send(());
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("worker {id} did not start: {:?}", output.lock().unwrap()));
        Worker {
            child,
            id: id.to_owned(),
            output,
        }
    }
}

struct Worker {
    child: Child,
    id: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    /// As the kernel's OOM killer or a pulled plug would stop it: no chance to clean up.
    fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// As a service manager stops it, and waits for it to exit.
    fn sigterm(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "worker {} did not stop", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upload(server: &Server, song: &Path) -> u64 {
    let reply = server.upload(song, &[]);
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_u64().unwrap()
}

fn workers(server: &Server) -> Value {
    let reply = server.get("/api/v1/workers");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Waits until `worker` says it runs job `id` and the job is separating.
fn wait_running_on(server: &Server, id: u64, worker: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listed = workers(server);
        let on_it = listed["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == worker && w["job"] == id);
        let stage = server.get(&format!("/api/v1/jobs/{id}")).json()["stage"].clone();
        if on_it && stage == "separating" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never ran on {worker}: {listed} {stage}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The song folders in the shared folder, by name, with their files.
fn song_folders(shared: &Path) -> BTreeMap<String, Vec<String>> {
    let mut folders = BTreeMap::new();
    for entry in std::fs::read_dir(shared).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let mut files: Vec<String> = std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        folders.insert(name, files);
    }
    folders
}

fn staging_leftovers(shared: &Path) -> Vec<String> {
    std::fs::read_dir(shared.join(".stemdeck/staging"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

const STEMS: [&str; 4] = ["bass.wav", "drums.wav", "other.wav", "vocals.wav"];

/// Every stem of a finished job is a whole WAV as long as the song, as a client
/// downloads it; returns where the downloads were kept.
fn assert_whole_stems(server: &Server, job: &Value, seconds: f64) -> PathBuf {
    assert_eq!(job["stage"], "done", "{job}");
    let kept = server.dir.join("downloaded").join(job["id"].to_string());
    std::fs::create_dir_all(&kept).unwrap();
    let stems = job["stems"].as_array().unwrap();
    assert_eq!(stems.len(), 4, "{job}");
    for stem in stems {
        let reply = server.get(stem["path"].as_str().unwrap());
        assert_eq!(reply.status, 200, "{}", reply.text());
        let reader = hound::WavReader::new(std::io::Cursor::new(&reply.body))
            .unwrap_or_else(|e| panic!("{stem}: not a whole WAV: {e}"));
        let secs = reader.duration() as f64 / f64::from(reader.spec().sample_rate);
        assert!(
            (secs - seconds).abs() < 0.01,
            "{stem}: {secs} s, not {seconds}"
        );
        let name = format!("{}.wav", stem["name"].as_str().unwrap());
        std::fs::write(kept.join(name), &reply.body).unwrap();
    }
    kept
}

#[test]
fn two_workers_share_one_queue_and_every_job_finishes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    let server = cluster.serve();
    let first = cluster.worker("w1", true);
    let second = cluster.worker("w2", true);
    let listed = workers(&server);
    assert_eq!(listed["shared_queue"], true);
    assert_eq!(listed["workers"].as_array().unwrap().len(), 2, "{listed}");

    let started = Instant::now();
    let songs: Vec<PathBuf> = (0..12)
        .map(|i| {
            song_wav(
                dir.path(),
                &format!("Song {i:02}.wav"),
                2.0 + 0.1 * i as f32,
            )
        })
        .collect();
    let ids: Vec<u64> = songs.iter().map(|song| upload(&server, song)).collect();
    // The last one's progress arrives live over SSE, as from a local job.
    let events = read_events(
        &server,
        &format!("/api/v1/jobs/{}/events", ids[11]),
        PATIENCE,
        |_, e| ["done", "failed"].contains(&e["stage"].as_str().unwrap_or_default()),
    );
    let mut stages: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| e["stage"].as_str())
        .collect();
    stages.dedup();
    for stage in ["queued", "separating", "writing", "done"] {
        assert!(stages.contains(&stage), "{stage} not seen live: {stages:?}");
    }
    assert!(
        events.iter().any(|(_, e)| {
            e["stage"] == "separating" && e["progress"].as_f64().unwrap_or(0.0) > 0.05
        }),
        "no progress while separating: {events:?}"
    );
    let jobs: Vec<Value> = ids
        .iter()
        .map(|&id| server.wait_finished(id, PATIENCE))
        .collect();
    let wall = started.elapsed().as_secs_f64();

    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        assert_whole_stems(&server, job, 2.0 + 0.1 * i as f64);
        let timings = &job["timings"];
        *by_worker
            .entry(timings["worker"].as_str().unwrap().to_owned())
            .or_default() += 1;
        assert_eq!(timings["device"], "cpu");
        assert_eq!(
            timings["model_sha256"].as_str().unwrap().len(),
            64,
            "{timings}"
        );
    }
    assert_eq!(by_worker.values().sum::<usize>(), 12);
    assert_eq!(by_worker.len(), 2, "both workers took jobs: {by_worker:?}");

    // Exactly once: one complete folder per song, and nothing else.
    let folders = song_folders(&cluster.shared);
    assert_eq!(folders.len(), 12, "{folders:?}");
    for (name, files) in &folders {
        assert_eq!(files, &STEMS.map(str::to_owned).to_vec(), "{name}");
    }
    assert!(staging_leftovers(&cluster.shared).is_empty());

    // The stems are the model's: the same as separating the song on this machine.
    let local = dir.path().join("local");
    let status = Command::new(env!("CARGO_BIN_EXE_stemdeck"))
        .args(["separate", "-j", "2", "--no-cache", "-o"])
        .arg(&local)
        .arg(&songs[5])
        .env("STEMDECK_MODEL_DIR", dir.path().join("models"))
        .env("STEMDECK_CACHE_DIR", dir.path().join("cache-local"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let remote = assert_whole_stems(&server, &jobs[5], 2.5);
    for stem in STEMS {
        let (_, ours) = common::read_wav(&local.join("Song 05").join(stem));
        let (_, theirs) = common::read_wav(&remote.join(stem));
        let snr = common::snr(&ours, &theirs);
        assert!(snr > 60.0, "{stem}: {snr:.1} dB from a local separation");
    }

    // The workers' own counts, in the list and in the metrics (each worker's heartbeat
    // follows its last job by a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = workers(&server);
        let done: u64 = listed["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["jobs_done"].as_u64().unwrap())
            .sum();
        if done == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = server.get("/api/v1/metrics").text();
    for worker in [&first.id, &second.id] {
        let line = format!("stemdeck_worker_jobs{{worker=\"{worker}\",result=\"done\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in {metrics}"))
            .parse()
            .unwrap();
        assert_eq!(count as usize, by_worker[worker.as_str()]);
    }
    let audio: f64 = (0..12).map(|i| 2.0 + 0.1 * i as f64).sum();
    println!(
        "throughput: 12 jobs ({audio:.1} s of audio) on 2 workers in {wall:.1} s: {:.1} jobs/min, {:.2} s of audio per second; by worker {by_worker:?}",
        12.0 * 60.0 / wall,
        audio / wall
    );
}

#[test]
fn a_killed_workers_job_is_taken_over_and_no_partial_file_is_ever_listed() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    let server = Arc::new(cluster.serve());
    let mut doomed = cluster.worker("doomed", true);
    let song = song_wav(dir.path(), "Long Song.wav", 40.0);
    let id = upload(&server, &song);
    wait_running_on(&server, id, "doomed");
    std::thread::sleep(Duration::from_millis(500));

    // Watch what is listed, all along: a job shows stems only when they are whole, and
    // a song folder in the shared folder holds only whole files.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (server, watching, shared) = (server.clone(), watching.clone(), cluster.shared.clone());
        std::thread::spawn(move || {
            let mut looks = 0;
            while watching.load(Ordering::SeqCst) {
                let job = server.get(&format!("/api/v1/jobs/{id}")).json();
                if !job["stems"].as_array().unwrap().is_empty() {
                    assert_whole_stems(&server, &job, 40.0);
                }
                for (name, files) in song_folders(&shared) {
                    assert_eq!(files, STEMS.map(str::to_owned).to_vec(), "{name}");
                }
                looks += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
            looks
        })
    };
    let killed_at = Instant::now();
    doomed.sigkill();
    let heir = cluster.worker("heir", true);
    wait_running_on(&server, id, "heir");
    let taken_over = killed_at.elapsed().as_secs_f64();
    let job = server.wait_finished(id, PATIENCE);
    let finished = killed_at.elapsed().as_secs_f64();
    watching.store(false, Ordering::SeqCst);
    let looks = watcher.join().expect("nothing partial was listed");

    assert_whole_stems(&server, &job, 40.0);
    assert_eq!(job["timings"]["worker"], "heir", "{job}");
    assert_eq!(song_folders(&cluster.shared).len(), 1);
    assert!(
        staging_leftovers(&cluster.shared).is_empty(),
        "the dead worker's staging was cleared: {:?}",
        staging_leftovers(&cluster.shared)
    );
    assert!(heir.log().contains("reclaimed=true"), "{}", heir.log());
    // The dead worker's heartbeat runs out; the one that took over stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids: Vec<String> = workers(&server)["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        if ids == ["heir"] {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {ids:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "killed mid-job: separating again on the other worker {taken_over:.1} s later (claim timeout {CLAIM_TIMEOUT} s), done {finished:.1} s after the kill (40 s song, from the start); {looks} looks at the listing saw nothing partial"
    );
}

#[test]
fn a_redis_restart_mid_job_and_between_submissions_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(dir.path());
    let server = cluster.serve();
    let worker = cluster.worker("w1", true);
    // One job running on the worker and two waiting behind it when Redis dies, as in a
    // power cut, and comes back from its append-only file.
    let running = upload(&server, &song_wav(dir.path(), "Running.wav", 40.0));
    wait_running_on(&server, running, "w1");
    let mut ids = vec![running];
    for i in 0..2 {
        ids.push(upload(
            &server,
            &song_wav(dir.path(), &format!("Before {i}.wav"), 2.0),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while workers(&server)["waiting"] != 2 {
        assert!(Instant::now() < deadline, "{}", workers(&server));
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = cluster.redis.port;
    cluster.redis.kill();
    let unreachable = server.get("/api/v1/workers");
    assert_eq!(unreachable.status, 503, "{}", unreachable.text());
    assert_eq!(unreachable.json()["error"], "queue_unreachable");
    // Submissions while it is away are kept, and handed over once it is back.
    ids.push(upload(&server, &song_wav(dir.path(), "During.wav", 2.0)));
    std::thread::sleep(Duration::from_millis(500));
    cluster.redis = RedisServer::start_on(&dir.path().join("redis"), port);
    ids.push(upload(&server, &song_wav(dir.path(), "After.wav", 2.0)));
    // The server restarts too: it follows the jobs it had handed over.
    let mut server = server;
    assert!(server.stop().success());
    let server = cluster.serve();
    for (i, id) in ids.iter().enumerate() {
        let job = server.wait_finished(*id, PATIENCE);
        assert_whole_stems(&server, &job, if i == 0 { 40.0 } else { 2.0 });
    }
    assert_eq!(song_folders(&cluster.shared).len(), 5);
    assert!(staging_leftovers(&cluster.shared).is_empty());
    assert_eq!(workers(&server)["waiting"], 0);
    // The running job was finished by the attempt that was running, not started again.
    let taken = worker.log().matches("job taken: Running").count();
    assert_eq!(taken, 1, "{}", worker.log());
}

#[test]
fn cancel_reaches_the_worker_running_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    let server = cluster.serve();
    let worker = cluster.worker("w1", true);
    let id = upload(&server, &song_wav(dir.path(), "Cancel Me.wav", 60.0));
    wait_running_on(&server, id, "w1");
    let asked = Instant::now();
    let reply = server.post_json(&format!("/api/v1/jobs/{id}/cancel"), serde_json::json!({}));
    assert!(reply.status < 300, "{}", reply.text());
    let job = server.wait_finished(id, Duration::from_secs(30));
    let took = asked.elapsed().as_secs_f64();
    assert_eq!(job["stage"], "cancelled", "{job}");
    assert!(
        took < 3.0,
        "the cancel took {took:.1} s to reach the worker"
    );
    // The worker is free again and kept nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers(&server)["workers"][0]["job"] != Value::Null {
        assert!(Instant::now() < deadline, "{}", workers(&server));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(song_folders(&cluster.shared).is_empty());
    assert!(staging_leftovers(&cluster.shared).is_empty());
    assert!(worker.log().contains("job taken"), "{}", worker.log());
    // It takes the next job.
    let next = upload(&server, &song_wav(dir.path(), "Next.wav", 2.0));
    assert_whole_stems(&server, &server.wait_finished(next, PATIENCE), 2.0);
    println!("cancel reached the worker and ended the job in {took:.2} s");
}

#[test]
fn a_worker_without_the_model_refuses_with_a_reason_the_api_shows() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    let server = cluster.serve();
    let _worker = cluster.worker("bare", false);
    let id = upload(&server, &song_wav(dir.path(), "Song.wav", 2.0));
    let job = server.wait_finished(id, PATIENCE);
    assert_eq!(job["stage"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("worker bare") && error.contains("has no model “htdemucs”"),
        "{error}"
    );
    assert!(error.contains("955717e8-8726e21a.th"), "{error}");
    assert_eq!(job["can_retry"], true);
    assert!(song_folders(&cluster.shared).is_empty());
    println!("refused: {error}");
}

#[test]
fn a_stopped_worker_hands_its_job_straight_back() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    let server = cluster.serve();
    // A long claim timeout: only a handed-back ticket can move on this quickly.
    let mut leaving = cluster.worker_with("leaving", true, "600");
    let id = upload(&server, &song_wav(dir.path(), "Handed Back.wav", 40.0));
    wait_running_on(&server, id, "leaving");
    assert!(leaving.sigterm().success(), "{}", leaving.log());
    assert!(
        leaving.log().contains("stopped: 0 done"),
        "{}",
        leaving.log()
    );
    let stopped = Instant::now();
    let _staying = cluster.worker_with("staying", true, "600");
    wait_running_on(&server, id, "staying");
    let moved = stopped.elapsed().as_secs_f64();
    assert!(
        moved < 20.0,
        "the job waited {moved:.1} s for another worker"
    );
    let job = server.wait_finished(id, PATIENCE);
    assert_whole_stems(&server, &job, 40.0);
    assert_eq!(job["timings"]["worker"], "staying");
    assert_eq!(song_folders(&cluster.shared).len(), 1);
    assert!(staging_leftovers(&cluster.shared).is_empty());
    let listed = workers(&server);
    let ids: Vec<&str> = listed["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["staying"], "the stopped worker left the list at once");
}

#[test]
fn a_queue_or_folder_that_is_not_there_is_said_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!(
        "redis://127.0.0.1:{}/0",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let shared = dir.path().to_str().unwrap();
    let missing = dir.path().join("not-mounted");
    let cases: [(&[&str], &str); 5] = [
        (
            &["worker", "--queue", &nobody, "--results", "s3://"],
            "names no bucket (s3://BUCKET/PREFIX)",
        ),
        (
            &["worker", "--queue", &nobody, "--results", shared],
            "cannot be reached",
        ),
        (
            &["worker", "--queue", "localhost:6379", "--results", shared],
            "is not a Redis address",
        ),
        (
            &[
                "worker",
                "--queue",
                &nobody,
                "--results",
                missing.to_str().unwrap(),
            ],
            "does not exist (mount it, or create it)",
        ),
        (
            &[
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--queue",
                &nobody,
                "--results",
                shared,
            ],
            "cannot be reached",
        ),
    ];
    for (args, words) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_stemdeck"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
}

/// `s3s-fs`, an S3-compatible server over a folder (`cargo install s3s-fs --features
/// binary`; `scripts/test.sh` does), on a free port with its own keys.
struct S3Server {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl S3Server {
    fn start(root: &Path, bucket: &str) -> Self {
        std::fs::create_dir_all(root.join(bucket)).unwrap(); // a folder is a bucket
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "stemdeck-test", "--secret-key", "stemdeck-test-secret"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs runs this test: cargo install s3s-fs --version 0.14.1 --features binary (scripts/test.sh does)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            root: root.to_owned(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "stemdeck-test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "stemdeck-test-secret".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            // The processes are kept offline through a dead proxy; the bucket is local.
            ("NO_PROXY", "127.0.0.1".to_owned()),
            ("no_proxy", "127.0.0.1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn uploads_and_stems_can_travel_through_an_s3_bucket_instead() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"), "stems");
    let mut cluster = Cluster::new(dir.path());
    cluster.results = "s3://stems/catalogue".into();
    cluster.env = s3.env();
    let server = cluster.serve();
    let _first = cluster.worker("w1", true);
    let _second = cluster.worker("w2", true);
    let ids: Vec<u64> = (0..4)
        .map(|i| {
            upload(
                &server,
                &song_wav(dir.path(), &format!("Bucket Song {i}.wav"), 2.0),
            )
        })
        .collect();
    let in_bucket = s3.root.join("stems/catalogue");
    for (i, id) in ids.iter().enumerate() {
        let job = server.wait_finished(*id, PATIENCE);
        let downloaded = assert_whole_stems(&server, &job, 2.0);
        // The bucket holds the same files under the song's name.
        for stem in STEMS {
            let object = in_bucket.join(format!("Bucket Song {i}")).join(stem);
            assert_eq!(
                std::fs::read(&object).unwrap_or_else(|e| panic!("{}: {e}", object.display())),
                std::fs::read(downloaded.join(stem)).unwrap(),
                "{stem}"
            );
        }
    }
    // The uploads' copies in the bucket went once their jobs ended; nothing is staged on
    // the shared folder (there is none).
    let leftover_inputs: Vec<_> = walk(&in_bucket.join(".stemdeck/inputs"));
    assert!(leftover_inputs.is_empty(), "{leftover_inputs:?}");
    assert!(song_folders(&cluster.shared).is_empty());
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}
