//! `stemdeck serve` end to end, over real HTTP with the small fixture model: a song
//! uploaded and a link separated as curl would do it, progress over Server-Sent Events,
//! stems with Range, the streamed ZIP, FL-BT's three calls unchanged, the OpenAPI document
//! against the routes, metrics, a graceful stop that keeps the queue, and JSON logs.

mod common;
mod running_server;

use std::io::Read;
use std::time::{Duration, Instant};

use running_server::{Server, read_events, read_events_of, song_wav};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(180);

fn zip_names(bytes: &[u8]) -> Vec<String> {
    let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a whole ZIP");
    archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect()
}

#[test]
fn an_upload_separates_with_progress_range_and_a_streamed_zip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let song = song_wav(dir.path(), "My Song.wav", 3.0);

    let created = server.upload(&song, &[("format", "flac"), ("mix", "drums+bass")]);
    assert_eq!(created.status, 201, "{}", created.text());
    let job = created.json();
    let id = job["id"].as_u64().unwrap();
    assert_eq!(job["title"], "My Song");
    assert_eq!(job["stage"], "queued");
    assert_eq!(job["settings"]["format"], "flac");
    assert_eq!(
        created.header("location"),
        Some(&*format!("/api/v1/jobs/{id}"))
    );
    // The upload's place on the server is not shown: only its own name.
    assert_eq!(job["source"]["path"], "My Song.wav");

    // Progress streams until the job is done; the last event says so.
    let events = read_events(
        &server,
        &format!("/api/v1/jobs/{id}/events"),
        PATIENCE,
        |_, _| false,
    );
    let stages: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| e["stage"].as_str())
        .collect();
    assert_eq!(stages.last(), Some(&"done"), "{stages:?}");
    assert!(stages.contains(&"separating"), "{stages:?}");
    let percents: Vec<f64> = events
        .iter()
        .filter_map(|(_, e)| e["progress"].as_f64())
        .collect();
    assert!(
        percents.windows(2).filter(|w| w[1] < w[0] - 1e-9).count() == 0,
        "{percents:?}"
    );

    let job = server.get(&format!("/api/v1/jobs/{id}")).json();
    assert_eq!(job["stage"], "done", "{job}");
    assert_eq!(job["progress"], 1.0);
    let stems: Vec<&str> = job["stems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stems, ["drums", "bass", "other", "vocals"]);
    assert_eq!(job["mixes"][0]["name"], "mix-drums+bass");
    let timings = &job["timings"];
    assert!(
        (timings["audio_secs"].as_f64().unwrap() - 3.0).abs() < 0.01,
        "{timings}"
    );
    assert!(timings["rtf"].as_f64().unwrap() > 0.0);
    assert_eq!(timings["device"], "cpu");

    // A stem in full, then a range of it.
    let url = job["stems"][3]["path"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("/api/v1/jobs/{id}/stems/vocals"));
    let whole = server.get(&url);
    assert_eq!(whole.status, 200);
    assert_eq!(&whole.body[..4], b"fLaC");
    assert!(
        whole
            .header("content-disposition")
            .unwrap()
            .contains("My Song - vocals.flac")
    );
    let part = server.get_with(&url, &[("Range", "bytes=4-103")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[4..104]);
    assert_eq!(
        part.header("content-range"),
        Some(&*format!("bytes 4-103/{}", whole.body.len()))
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/jobs/{id}/stems/vocals.flac"))
            .body,
        whole.body
    );

    // The ZIP holds every stem and the mix, byte for byte.
    let zip = server.get(&format!("/api/v1/jobs/{id}/zip"));
    assert_eq!(zip.status, 200);
    assert_eq!(zip.header("content-type"), Some("application/zip"));
    let mut names = zip_names(&zip.body);
    names.sort();
    assert_eq!(
        names,
        [
            "My Song/bass.flac",
            "My Song/drums.flac",
            "My Song/mix-drums+bass.flac",
            "My Song/other.flac",
            "My Song/vocals.flac"
        ]
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip.body)).unwrap();
    let mut vocals = Vec::new();
    archive
        .by_name("My Song/vocals.flac")
        .unwrap()
        .read_to_end(&mut vocals)
        .unwrap();
    assert_eq!(vocals, whole.body);

    // Metrics count it.
    let metrics = server.get("/api/v1/metrics").text();
    assert!(
        metrics.contains("stemdeck_jobs{stage=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("stemdeck_rtf_count 1"), "{metrics}");
    assert!(
        metrics.contains("stemdeck_audio_seconds_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("stemdeck_queue_depth 0"), "{metrics}");

    // Removing it removes the uploaded song too, which only this job used.
    let uploads = dir.path().join("data/uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
    assert_eq!(server.delete(&format!("/api/v1/jobs/{id}")).status, 204);
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    assert_eq!(server.get(&format!("/api/v1/jobs/{id}")).status, 404);
}

#[test]
fn links_fl_bt_calls_cancel_and_retry_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    // FL-BT's client: submit by video ID, poll, download.
    let submitted = server.send("POST", "/api/submit/dQw4w9WgXcQ", "text/plain", b"");
    assert_eq!(submitted.status, 200, "{}", submitted.text());
    let submitted = submitted.json();
    assert_eq!(submitted["video_id"], "dQw4w9WgXcQ");
    assert_eq!(submitted["status"], "PENDING");
    let task = submitted["task_id"].as_str().unwrap().to_owned();
    let early = server.get(&format!("/api/download/{task}"));
    assert_eq!(early.status, 404);
    assert_eq!(early.json()["detail"], "Result not available");
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let status = server.get(&format!("/api/status/{task}")).json();
        assert_eq!(status["task_id"], task.as_str());
        let s = status["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "SUCCESS" || s == "FAILURE" {
            assert_eq!(s, "SUCCESS", "{status}: {}", server.log());
            assert!(status["error"].is_null());
            break;
        }
        assert!(Instant::now() < deadline, "{seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen.iter()
            .all(|s| ["PENDING", "RUNNING", "SUCCESS"].contains(&s.as_str())),
        "{seen:?}"
    );
    let zip = server.get(&format!("/api/download/{task}"));
    assert_eq!(zip.status, 200);
    let mut names = zip_names(&zip.body);
    names.sort();
    assert_eq!(
        names,
        [
            "Fake Video Song/bass.wav",
            "Fake Video Song/drums.wav",
            "Fake Video Song/other.wav",
            "Fake Video Song/vocals.wav"
        ]
    );

    // The same video through /api/v1 with options, then cancelled while it waits behind
    // a longer song, and retried.
    let long = song_wav(dir.path(), "long.wav", 60.0);
    let blocker = server.upload(&long, &[]).json()["id"].as_u64().unwrap();
    read_events(
        &server,
        &format!("/api/v1/jobs/{blocker}/events"),
        PATIENCE,
        |_, e| e["stage"] == "separating",
    );
    let linked = server.post_json(
        "/api/v1/jobs",
        json!({"link": "https://youtu.be/dQw4w9WgXcQ", "two_stems": "vocals", "format": "mp3"}),
    );
    assert_eq!(linked.status, 201, "{}", linked.text());
    let id = linked.json()["id"].as_u64().unwrap();
    let cancelled = server.delete(&format!("/api/v1/jobs/{id}"));
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.json()["stage"], "cancelled");
    assert_eq!(
        server.delete(&format!("/api/v1/jobs/{blocker}")).json()["stage"],
        "cancelled"
    );
    let retried = server.send(
        "POST",
        &format!("/api/v1/jobs/{id}/retry"),
        "application/json",
        b"",
    );
    assert_eq!(retried.status, 200, "{}", retried.text());
    let job = server.wait_finished(id, PATIENCE);
    assert_eq!(job["stage"], "done", "{job}");
    let stems: Vec<&str> = job["stems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stems, ["vocals", "no_vocals"]);
    assert_eq!(job["source"]["kind"], "link");
    assert_eq!(job["title"], "Fake Video Song");
    let mp3 = server.get(&format!("/api/v1/jobs/{id}/stems/no_vocals"));
    assert_eq!(mp3.header("content-type"), Some("audio/mpeg"));

    // Retrying a job that is done is refused, with the reason.
    let again = server.send(
        "POST",
        &format!("/api/v1/jobs/{id}/retry"),
        "application/json",
        b"",
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"], "not_retryable");
}

#[test]
fn bad_requests_get_clear_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let song = song_wav(dir.path(), "song.wav", 1.0);

    let cases: Vec<(running_server::Reply, u16, &str, &str)> = vec![
        (
            server.upload(&song, &[("model", "htdemucs_9000")]),
            400,
            "invalid_option",
            "htdemucs_9000",
        ),
        (
            server.upload(&song, &[("shifts", "many")]),
            400,
            "bad_request",
            "shifts must be a number",
        ),
        (
            server.upload(&song, &[("bit_depth", "12")]),
            400,
            "bad_request",
            "bit_depth must be 16, 24 or 32",
        ),
        (
            server.upload(&song, &[("mix", "drums+kazoo")]),
            400,
            "invalid_option",
            "kazoo",
        ),
        (
            server.upload(&song, &[("colour", "red")]),
            400,
            "bad_request",
            "unknown field `colour`",
        ),
        (
            server.post_json("/api/v1/jobs", json!({"link": "https://vimeo.com/1234"})),
            400,
            "invalid_link",
            "vimeo.com",
        ),
        (
            server.post_json("/api/v1/jobs", json!({"title": "x"})),
            400,
            "bad_request",
            "needs a “link”",
        ),
        (
            server.send("POST", "/api/v1/jobs", "text/plain", b"hello"),
            415,
            "bad_request",
            "multipart/form-data",
        ),
        (
            server.get("/api/v1/jobs/12345"),
            404,
            "not_found",
            "There is no job 12345",
        ),
        (
            server.get("/api/v1/jobs/abc/zip"),
            404,
            "not_found",
            "There is no job abc",
        ),
        (
            server.get("/api/v1/nothing-here"),
            404,
            "not_found",
            "openapi.json",
        ),
        (
            server.send(
                "POST",
                "/api/v1/models/htdemucs_9000/download",
                "application/json",
                b"",
            ),
            404,
            "unknown_model",
            "htdemucs_9000",
        ),
        (
            server.send(
                "PUT",
                "/api/v1/settings",
                "application/json",
                br#"{"job": {"model": "x"}}"#,
            ),
            400,
            "bad_request",
            "missing field",
        ),
    ];
    for (reply, status, code, words) in cases {
        assert_eq!(reply.status, status, "{}", reply.text());
        let body = reply.json();
        assert_eq!(body["error"], code, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&words.to_lowercase()),
            "{message:?} should say {words:?}"
        );
    }

    // Not audio: refused at once with the reason, and the upload is not kept.
    let notes = dir.path().join("notes.mp3");
    std::fs::write(&notes, "shopping: milk, eggs\n".repeat(50)).unwrap();
    let refused = server.upload(&notes, &[]);
    assert_eq!(refused.status, 415, "{}", refused.text());
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("Notes.mp3: not a file Stemdeck can separate")
            || message.contains("notes.mp3"),
        "{message}"
    );
    assert!(
        !message.contains("uploads"),
        "the server's folders stay private: {message}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/uploads"))
            .unwrap()
            .count(),
        0
    );

    // A ZIP of a job that is not done says so.
    let long = song_wav(dir.path(), "long.wav", 30.0);
    let id = server.upload(&long, &[]).json()["id"].as_u64().unwrap();
    let early = server.get(&format!("/api/v1/jobs/{id}/zip"));
    assert_eq!(early.status, 409);
    assert_eq!(early.json()["error"], "not_done");
}

#[test]
fn the_openapi_document_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let doc = server.get("/api/v1/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path
                .replace("{id}", "1")
                .replace("{task_id}", "1")
                .replace("{name}", "no-such-model")
                .replace("{video_id}", "not-a-video");
            // Routes that would start work get a request that fails its checks instead.
            let reply = match method {
                // An event stream never ends: its status is enough.
                "get" if concrete == "/api/v1/events" => {
                    let response = server
                        .agent
                        .get(format!("{}{concrete}", server.base))
                        .call()
                        .unwrap();
                    assert_eq!(response.status().as_u16(), 200);
                    continue;
                }
                "get" => server.get(&concrete),
                "put" => server.send("PUT", &concrete, "application/json", b"{}"),
                "post" if concrete == "/api/v1/jobs" => {
                    server.send("POST", &concrete, "text/plain", b"")
                }
                m => server.send(&m.to_uppercase(), &concrete, "application/json", b""),
            };
            assert_ne!(
                reply.status, 405,
                "{method} {path} is documented but not routed"
            );
            if reply.status == 404 {
                let message = reply.json()["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    !message.contains("no such route"),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
    // And the routes the server has are all documented.
    let served = [
        "GET /api/v1/health",
        "GET /api/v1/metrics",
        "GET /api/v1/workers",
        "GET /api/v1/openapi.json",
        "GET /api/v1/jobs",
        "POST /api/v1/jobs",
        "GET /api/v1/jobs/{id}",
        "DELETE /api/v1/jobs/{id}",
        "GET /api/v1/jobs/{id}/events",
        "POST /api/v1/jobs/{id}/cancel",
        "POST /api/v1/jobs/{id}/retry",
        "GET /api/v1/jobs/{id}/stems/{name}",
        "GET /api/v1/jobs/{id}/zip",
        "GET /api/v1/events",
        "GET /api/v1/models",
        "DELETE /api/v1/models/{name}",
        "POST /api/v1/models/{name}/download",
        "GET /api/v1/settings",
        "PUT /api/v1/settings",
        "POST /api/submit/{video_id}",
        "GET /api/status/{task_id}",
        "GET /api/download/{task_id}",
    ];
    let mut documented_sorted = documented.clone();
    documented_sorted.sort();
    let mut served_sorted: Vec<String> = served.iter().map(|s| s.to_string()).collect();
    served_sorted.sort();
    assert_eq!(documented_sorted, served_sorted);
}

#[test]
fn models_list_and_settings_change_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let models = server.get("/api/v1/models").json();
    let htdemucs = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "htdemucs")
        .unwrap();
    assert_eq!(htdemucs["state"], "ready", "{htdemucs}");
    let six = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "htdemucs_6s")
        .unwrap();
    assert_eq!(six["state"], "missing");

    // Offline, a download fails clearly at the end of its event stream, and is counted.
    let events = read_events_of(
        &server,
        "POST",
        "/api/v1/models/htdemucs_6s/download",
        PATIENCE,
        |name, _| name == "done" || name == "error",
    );
    let (name, last) = events.last().expect("an event");
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(last["error"], "download_failed");
    assert!(
        last["message"].as_str().unwrap().contains("htdemucs_6s")
            || last["message"].as_str().unwrap().contains("download"),
        "{last}"
    );
    let metrics = server.get("/api/v1/metrics").text();
    assert!(
        metrics
            .contains("stemdeck_model_downloads_total{model=\"htdemucs_6s\",result=\"failed\"} 1"),
        "{metrics}"
    );

    let mut settings = server.get("/api/v1/settings").json();
    assert_eq!(settings["job"]["format"], "wav");
    settings["job"]["format"] = json!("flac");
    settings["job"]["sample_format"] = json!("int24");
    let body = json!({"job": settings["job"]}).to_string();
    let saved = server.send(
        "PUT",
        "/api/v1/settings",
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(saved.status, 200, "{}", saved.text());
    let song = song_wav(dir.path(), "song.wav", 1.0);
    let job = server.upload(&song, &[]).json();
    assert_eq!(job["settings"]["format"], "flac");
    assert_eq!(job["settings"]["sample_format"], "int24");
    // Saved as the app saves its settings.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/settings.json")).unwrap())
            .unwrap();
    assert_eq!(file["job"]["format"], "flac");
}

#[test]
fn stopping_cancels_the_running_job_cleanly_and_keeps_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--log-format", "json"]);
    let long = song_wav(dir.path(), "long.wav", 40.0);
    let short = song_wav(dir.path(), "short.wav", 1.0);
    let running = server.upload(&long, &[]).json()["id"].as_u64().unwrap();
    let waiting = server.upload(&short, &[]).json()["id"].as_u64().unwrap();
    read_events(
        &server,
        &format!("/api/v1/jobs/{running}/events"),
        PATIENCE,
        |_, e| e["stage"] == "separating",
    );
    // A client listening to all events must not hold the stop up.
    let listener = {
        let base = server.base.clone();
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut body = Vec::new();
            if let Ok(r) = agent.get(format!("{base}/api/v1/events")).call() {
                let _ = r.into_body().into_reader().read_to_end(&mut body);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = server.stop();
    assert!(status.success(), "{status}: {}", server.log());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopping took {:?}",
        started.elapsed()
    );
    listener.join().unwrap();

    // No partial file anywhere, and both jobs are still queued.
    let stems = dir.path().join("data/stems");
    let leftovers: Vec<_> = walk(&stems)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let library: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/library.json")).unwrap())
            .unwrap();
    for job in library["jobs"].as_array().unwrap() {
        assert_eq!(job["stage"], "queued", "{job}");
    }

    // JSON logs: one object per line, with the job id and stage.
    let log = server.log();
    let stages: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["job_id"].as_u64() == Some(running))
        .collect();
    assert!(
        stages
            .iter()
            .any(|l| l["stage"] == "Separating" || l["stage"] == "separating"),
        "{log}"
    );
    assert!(
        stages
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string())
    );

    // The next start runs both.
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.wait_finished(running, PATIENCE)["stage"], "done");
    assert_eq!(server.wait_finished(waiting, PATIENCE)["stage"], "done");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

#[test]
fn the_browser_ui_is_served_same_origin_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let page = server.get("/");
    assert_eq!(page.status, 200, "build the UI first: {}", page.text());
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let policy = page.header("content-security-policy").unwrap();
    for rule in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(rule), "{policy}");
    }
    let html = page.text();
    assert!(html.contains(r#"id="mixer""#), "the app's own page");

    // Its script and styles, by the names the page gives them, cached for good.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|part| part.starts_with("/assets/"))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{html}");
    for asset in assets {
        let reply = server.get(asset);
        assert_eq!(reply.status, 200, "{asset}");
        let kind = reply.header("content-type").unwrap();
        assert!(
            kind.contains("javascript") || kind.contains("css"),
            "{asset}: {kind}"
        );
        assert!(reply.header("cache-control").unwrap().contains("immutable"));
        assert!(!reply.body.is_empty());
    }

    // Nothing else is a page: not a made-up address, not the API's missing routes, not a
    // form posted to the page.
    for path in ["/settings", "/assets/nope.js", "/api/nope", "/api/v1/nope"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["error"], "not_found", "{path}");
    }
    assert_eq!(server.send("POST", "/", "text/plain", b"x").status, 404);
}
