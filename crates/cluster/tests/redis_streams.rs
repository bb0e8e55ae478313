//! The job protocol against a real `redis-server` (the Debian package), started by each
//! test on a free loopback port in a temporary folder, with the append-only file on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use stemdeck_cluster::{Claim, JobStream, Progress, Ticket, WorkerInfo, Workers, connect};

#[path = "../../../tests/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

fn stream(redis: &RedisServer, idle: Duration) -> JobStream {
    JobStream::open(connect(&redis.url()).unwrap(), "test", idle).unwrap()
}

fn ticket(job: u64) -> Ticket {
    Ticket {
        job,
        work: json!({"input": format!("uploads/{job}/song.wav"), "model": "htdemucs"}),
    }
}

#[test]
fn every_ticket_goes_to_exactly_one_of_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let mut server = stream(&redis, Duration::from_secs(30));
    for job in 1..=12 {
        server.submit(&ticket(job)).unwrap();
    }
    assert_eq!(server.depth().unwrap(), (12, 0));
    let finished = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = ["worker-a", "worker-b"]
        .into_iter()
        .map(|name| {
            let mut queue = stream(&redis, Duration::from_secs(30));
            let finished = finished.clone();
            thread::spawn(move || {
                let mut mine = 0;
                while let Some(claim) = queue.next(name, Duration::from_millis(300)).unwrap() {
                    assert!(!claim.reclaimed);
                    assert_eq!(claim.ticket, ticket(claim.ticket.job));
                    thread::sleep(Duration::from_millis(30));
                    assert!(queue.keep(name, &claim).unwrap());
                    assert!(queue.win(name, &claim).unwrap());
                    queue.done(&claim).unwrap();
                    finished.lock().unwrap().push(claim.ticket.job);
                    mine += 1;
                }
                mine
            })
        })
        .collect();
    let counts: Vec<u32> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let finished = finished.lock().unwrap().clone();
    let unique: BTreeSet<u64> = finished.iter().copied().collect();
    assert_eq!(finished.len(), 12, "each job once: {finished:?}");
    assert_eq!(unique, (1..=12).collect());
    assert!(
        counts.iter().all(|&c| c > 0),
        "both workers worked: {counts:?}"
    );
    assert_eq!(
        server.depth().unwrap(),
        (0, 0),
        "nothing left queued or held"
    );
}

#[test]
fn a_quiet_workers_ticket_goes_to_another_and_only_one_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let idle = Duration::from_millis(300);
    let (mut a, mut b) = (stream(&redis, idle), stream(&redis, idle));
    a.submit(&ticket(7)).unwrap();
    let taken = a.next("a", Duration::from_millis(100)).unwrap().unwrap();
    assert_eq!(taken.ticket.job, 7);
    // Not idle long enough yet: nobody else gets it.
    assert_eq!(b.next("b", Duration::from_millis(50)).unwrap(), None);
    thread::sleep(idle + Duration::from_millis(100));
    let retaken: Claim = b.next("b", Duration::from_millis(50)).unwrap().unwrap();
    assert!(retaken.reclaimed, "taken over from a quiet worker");
    assert_eq!((retaken.ticket.job, &retaken.entry), (7, &taken.entry));
    assert!(
        !a.keep("a", &taken).unwrap(),
        "the first worker learns it lost the job"
    );
    assert!(b.keep("b", &retaken).unwrap());
    assert!(b.win("b", &retaken).unwrap());
    assert!(b.win("b", &retaken).unwrap(), "asking again still wins");
    assert!(!a.win("a", &taken).unwrap(), "a job is finished once");
    assert_eq!(b.winner(7).unwrap().unwrap(), format!("b {}", taken.entry));
    assert!(
        !b.keep("b", &retaken).unwrap(),
        "after the win there is nothing to keep"
    );
    b.done(&retaken).unwrap();
    thread::sleep(idle + Duration::from_millis(100));
    assert_eq!(
        a.next("a", Duration::from_millis(50)).unwrap(),
        None,
        "done is done"
    );
}

#[test]
fn a_claim_kept_fresh_is_never_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let idle = Duration::from_millis(600);
    let (mut a, mut b) = (stream(&redis, idle), stream(&redis, idle));
    a.submit(&ticket(1)).unwrap();
    let claim = a.next("a", Duration::from_millis(100)).unwrap().unwrap();
    let until = Instant::now() + Duration::from_millis(1800);
    while Instant::now() < until {
        assert!(a.keep("a", &claim).unwrap());
        assert_eq!(b.next("b", Duration::from_millis(100)).unwrap(), None);
    }
    assert_eq!(a.depth().unwrap(), (0, 1));
}

#[test]
fn progress_reads_on_from_where_it_left_off_and_cancel_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let mut worker = Progress::open(connect(&redis.url()).unwrap(), "test");
    let mut server = Progress::open(connect(&redis.url()).unwrap(), "test");
    assert_eq!(server.latest(3).unwrap(), None);
    for percent in [10, 20, 30] {
        worker
            .publish(3, &json!({"stage": "separating", "percent": percent}))
            .unwrap();
    }
    let first = server.read(3, "0", Duration::from_millis(50)).unwrap();
    let percents: Vec<_> = first.iter().map(|e| e.update["percent"].clone()).collect();
    assert_eq!(percents, [json!(10), json!(20), json!(30)]);
    // A reader waiting for more is woken by the next update.
    let last = first.last().unwrap().id.clone();
    let publisher = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        worker.publish(3, &json!({"stage": "done"})).unwrap();
    });
    let started = Instant::now();
    let next = server.read(3, &last, Duration::from_secs(5)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    publisher.join().unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].update["stage"], "done");
    assert_eq!(server.latest(3).unwrap().unwrap(), next[0]);
    assert!(
        server
            .read(3, &next[0].id, Duration::from_millis(50))
            .unwrap()
            .is_empty()
    );

    let mut queue = stream(&redis, Duration::from_secs(30));
    assert!(!queue.is_cancelled(3).unwrap());
    queue.cancel(3).unwrap();
    assert!(queue.is_cancelled(3).unwrap());
    assert!(!queue.is_cancelled(4).unwrap());
}

#[test]
fn workers_are_listed_while_they_beat_and_drop_out_when_they_stop() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let ttl = Duration::from_millis(1000);
    let mut workers = Workers::open(connect(&redis.url()).unwrap(), "test", ttl);
    let info = |id: &str, job| WorkerInfo {
        id: id.to_owned(),
        host: "studio-pc".into(),
        device: "cpu".into(),
        job,
        jobs_done: 0,
        jobs_failed: 0,
        started_at: 1_790_000_000,
    };
    workers.beat(&info("a", Some(5))).unwrap();
    workers.beat(&info("b", None)).unwrap();
    assert_eq!(
        workers.list().unwrap(),
        [info("a", Some(5)), info("b", None)]
    );
    thread::sleep(Duration::from_millis(500));
    workers.beat(&info("a", Some(6))).unwrap();
    thread::sleep(Duration::from_millis(700));
    assert_eq!(
        workers.list().unwrap(),
        [info("a", Some(6))],
        "b went quiet"
    );
    workers.leave("a").unwrap();
    assert!(workers.list().unwrap().is_empty());
}

#[test]
fn tickets_survive_redis_being_killed_and_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path());
    let idle = Duration::from_millis(300);
    let mut server = stream(&redis, idle);
    for job in 1..=3 {
        server.submit(&ticket(job)).unwrap();
    }
    let held = stream(&redis, idle)
        .next("a", Duration::from_millis(100))
        .unwrap()
        .unwrap();
    redis.kill();
    let redis = RedisServer::start_on(dir.path(), redis.port);
    let mut worker = stream(&redis, idle);
    assert_eq!(worker.depth().unwrap(), (2, 1), "two waiting, one held");
    thread::sleep(idle + Duration::from_millis(100));
    let mut seen = Vec::new();
    while let Some(claim) = worker.next("b", Duration::from_millis(100)).unwrap() {
        assert!(worker.win("b", &claim).unwrap());
        worker.done(&claim).unwrap();
        seen.push((claim.ticket.job, claim.reclaimed));
    }
    seen.sort();
    assert_eq!(seen, [(1, held.ticket.job == 1), (2, false), (3, false)]);
}
