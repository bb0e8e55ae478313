//! The model downloader against a real HTTP server on loopback, started by the test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use sha2::{Digest, Sha256};
use stemdeck_engine::models::download::download_verified;
use stemdeck_engine::models::manager::{PresenceState, presence};
use stemdeck_engine::models::manifest::{self, ModelFile, ModelInfo};
use stemdeck_engine::{EngineError, ModelStore};

fn body() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn sha_prefix(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `n`th file of a bag: each member has its own content and length.
fn member_body(n: usize) -> Vec<u8> {
    (0..100_000 + 20_000 * n as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519).wrapping_add(n as u32) >> 24) as u8)
        .collect()
}

/// Serves `/ok`, `/member/<n>`, `/truncated` (announces the full length, sends a third) and
/// 404 for the rest.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let data = body();
            let _ = match path.as_str() {
                "/ok" => {
                    write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len()).unwrap();
                    stream.write_all(&data)
                }
                member if member.starts_with("/member/") => {
                    let data = member_body(member["/member/".len()..].parse().unwrap());
                    write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len()).unwrap();
                    stream.write_all(&data)
                }
                "/truncated" => {
                    write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len()).unwrap();
                    stream.write_all(&data[..data.len() / 3])
                }
                _ => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"),
            };
        }
    });
    format!("http://{addr}")
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_verified_download_lands_under_its_final_name_with_progress() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("models").join("955717e8-8726e21a.th");
    let seen = std::sync::Mutex::new(Vec::new());
    download_verified(
        &format!("{base}/ok"),
        &dest,
        &sha_prefix(&body()),
        &|done, total| seen.lock().unwrap().push((done, total)),
        &|| false,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body());
    assert_eq!(
        files_in(dest.parent().unwrap()),
        vec!["955717e8-8726e21a.th"]
    );
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.last(), Some(&(300_000, Some(300_000))));
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "progress must grow"
    );
}

#[test]
fn every_failure_is_specific_and_leaves_no_file() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.th");
    let good = sha_prefix(&body());
    let cases: [(&str, &str, &str); 3] = [
        ("/ok", "00000000", "does not match its published checksum"),
        ("/truncated", good.as_str(), "stopped early"),
        ("/missing", good.as_str(), "HTTP 404"),
    ];
    for (path, prefix, words) in cases {
        let err = download_verified(&format!("{base}{path}"), &dest, prefix, &|_, _| {}, &|| {
            false
        })
        .unwrap_err();
        let message = err.to_string();
        println!("{path}: {message}");
        assert!(message.contains(words), "{path}: {message}");
        assert!(
            message.contains(path),
            "the message names the URL: {message}"
        );
        assert!(
            files_in(dir.path()).is_empty(),
            "{path} left {:?}",
            files_in(dir.path())
        );
    }
}

#[test]
fn an_unreachable_server_fails_quickly_with_a_connection_message() {
    // A port nothing listens on: bind one, then drop it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let err = download_verified(
        &format!("http://127.0.0.1:{port}/x.th"),
        &dir.path().join("x.th"),
        "00",
        &|_, _| {},
        &|| false,
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::Download { .. }));
    assert!(err.to_string().contains("cannot reach the server"), "{err}");
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn a_cancelled_download_stops_and_cleans_up() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let err = download_verified(
        &format!("{base}/ok"),
        &dir.path().join("m.th"),
        "00",
        &|_, _| {},
        &|| true,
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled));
    assert!(files_in(dir.path()).is_empty());
}

fn model_served_at(base: &str, path: &str, prefix: &str) -> ModelInfo {
    ModelInfo {
        name: "test".into(),
        description: "served on loopback".into(),
        sources: vec![
            "drums".into(),
            "bass".into(),
            "other".into(),
            "vocals".into(),
        ],
        segment_seconds: 7.8,
        relative_time: 1.0,
        architecture: manifest::find("htdemucs").unwrap().architecture,
        files: vec![ModelFile {
            name: format!("abcd1234-{prefix}.th"),
            url: format!("{base}{path}"),
            sha256_prefix: prefix.into(),
            bytes: None,
        }],
        weights: None,
    }
}

#[test]
fn the_store_downloads_once_into_its_first_folder_and_then_finds_the_file() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("env"), dir.path().join("cache"));
    let store = ModelStore::with_dirs(vec![first.clone(), second.clone()]);
    let model = model_served_at(&base, "/ok", &sha_prefix(&body()));
    let progress_calls = std::sync::atomic::AtomicUsize::new(0);
    let paths = store
        .ensure(
            &model,
            &|_, _, _| {
                progress_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
            &|| false,
        )
        .unwrap();
    assert_eq!(paths, vec![first.join(&model.files[0].name)]);
    assert!(progress_calls.into_inner() > 0);

    // Found without the network: a URL that would 404 is never fetched.
    let offline = model_served_at(&base, "/missing", &model.files[0].sha256_prefix);
    assert_eq!(
        store
            .ensure(&offline, &|_, _, _| panic!("no download expected"), &|| {
                false
            })
            .unwrap(),
        paths
    );

    // A file already in a later folder (the cache) is used as it is.
    std::fs::remove_file(&paths[0]).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(second.join(&model.files[0].name), body()).unwrap();
    assert_eq!(
        store
            .ensure(&offline, &|_, _, _| panic!("no download expected"), &|| {
                false
            })
            .unwrap(),
        vec![second.join(&model.files[0].name)]
    );
}

#[test]
fn a_failed_store_download_names_the_model_file_url_and_leaves_nothing() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::with_dirs(vec![dir.path().to_path_buf()]);
    let model = model_served_at(&base, "/ok", "deadbeef");
    let err = store.ensure(&model, &|_, _, _| {}, &|| false).unwrap_err();
    assert!(matches!(err, EngineError::ChecksumMismatch { .. }), "{err}");
    assert!(files_in(dir.path()).is_empty());
}

/// A bag of three files served on loopback, each published with its real hash prefix.
fn bag_served_at(base: &str) -> ModelInfo {
    let mut bag = model_served_at(base, "/ok", "00000000");
    bag.name = "test_bag".into();
    bag.relative_time = 3.0;
    bag.files = (0..3)
        .map(|n| {
            let prefix = sha_prefix(&member_body(n));
            ModelFile {
                name: format!("{n}{n}{n}{n}aaaa-{prefix}.th"),
                url: format!("{base}/member/{n}"),
                sha256_prefix: prefix,
                bytes: Some(member_body(n).len() as u64),
            }
        })
        .collect();
    bag.weights = Some(vec![vec![1.0; 4]; 3]);
    bag
}

#[test]
fn a_bag_downloads_every_member_with_progress_and_is_then_ready() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::with_dirs(vec![dir.path().to_path_buf()]);
    let bag = bag_served_at(&base);
    assert_eq!(presence(&store, &bag).state(), PresenceState::Missing);

    let seen = std::sync::Mutex::new(Vec::new());
    let paths = store
        .ensure(
            &bag,
            &|file, done, total| seen.lock().unwrap().push((file.name.clone(), done, total)),
            &|| false,
        )
        .unwrap();
    let seen = seen.into_inner().unwrap();
    for (n, file) in bag.files.iter().enumerate() {
        assert_eq!(paths[n], dir.path().join(&file.name));
        assert_eq!(std::fs::read(&paths[n]).unwrap(), member_body(n));
        let last = seen
            .iter()
            .rfind(|(name, _, _)| *name == file.name)
            .unwrap();
        assert_eq!((last.1, last.2), (file.bytes.unwrap(), file.bytes));
    }
    // Files download one after the other, in the manifest's order.
    let order: Vec<&String> = seen.iter().map(|(name, _, _)| name).collect();
    assert!(order.is_sorted_by_key(|name| bag.files.iter().position(|f| f.name == **name)));

    let here = presence(&store, &bag);
    assert_eq!(here.state(), PresenceState::Ready);
    assert!(!here.imported());
    assert_eq!(here.disk_bytes(), here.download_bytes());
}

#[test]
fn a_bag_member_with_a_wrong_hash_is_discarded_and_a_retry_fetches_only_what_is_missing() {
    let base = serve();
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::with_dirs(vec![dir.path().to_path_buf()]);
    let good = bag_served_at(&base);
    let mut tampered = good.clone();
    tampered.files[1].sha256_prefix = "deadbeef".into();

    let err = store
        .ensure(&tampered, &|_, _, _| {}, &|| false)
        .unwrap_err();
    assert!(matches!(err, EngineError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("/member/1"), "{err}");
    // The verified first member stays; the mismatching one left nothing, not even a
    // temporary file, and the third was never started.
    assert_eq!(files_in(dir.path()), vec![good.files[0].name.clone()]);
    assert_eq!(
        presence(&store, &good).state(),
        PresenceState::Partial {
            present: 1,
            total: 3
        }
    );

    let fetched = std::sync::Mutex::new(std::collections::BTreeSet::new());
    store
        .ensure(
            &good,
            &|file, _, _| {
                fetched.lock().unwrap().insert(file.name.clone());
            },
            &|| false,
        )
        .unwrap();
    assert_eq!(
        fetched.into_inner().unwrap(),
        [good.files[1].name.clone(), good.files[2].name.clone()].into()
    );
    assert_eq!(presence(&store, &good).state(), PresenceState::Ready);
}
