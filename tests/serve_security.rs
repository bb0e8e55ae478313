//! `stemdeck serve` is not an open door: tokens (missing, wrong, generated off loopback
//! with 0600), the upload size limit (declared and undeclared lengths, nothing kept),
//! a slowloris client cut off while others are served, malformed multipart, 200 rapid
//! submissions (429s, then recovery), path traversal in every parameter, and no CORS.

mod common;
mod running_server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use running_server::{Server, multipart, song_wav};
use serde_json::json;

#[test]
fn a_token_is_needed_when_given_and_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let mut server = Server::start(dir.path(), &["--token-file", token_file.to_str().unwrap()]);
    let token = server
        .token
        .clone()
        .expect("a generated token is printed once");
    assert_eq!(token.len(), 64);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let missing = server.get_with("/api/v1/jobs", &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert_eq!(missing.json()["error"], "unauthorized");
    assert!(
        missing.json()["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let wrong = server.get_with("/api/v1/jobs", &[("Authorization", "Bearer 1234")]);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["message"], "The token is wrong");
    let basic = server.get_with(
        "/api/v1/jobs",
        &[("Authorization", &format!("Basic {token}"))],
    );
    assert_eq!(basic.status, 401);
    for path in [
        "/api/v1/metrics",
        "/api/v1/jobs/1/zip",
        "/api/status/1",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(server.get_with(path, &[]).status, 401, "{path}");
    }
    // A small upload: a refused request's body is never read, so a client still sending a
    // large one may see the connection close before it reads the 401 (as it should).
    let song = song_wav(dir.path(), "song.wav", 1.0);
    let start = dir.path().join("start.wav");
    std::fs::write(&start, &std::fs::read(&song).unwrap()[..2048]).unwrap();
    let (ct, body) = multipart(&start, &[]);
    assert_eq!(
        server
            .send_with("POST", "/api/v1/jobs", &ct, &body, &[])
            .status,
        401
    );
    assert_eq!(
        server
            .send_with("POST", "/api/submit/dQw4w9WgXcQ", "text/plain", b"", &[])
            .status,
        401
    );
    assert_eq!(server.get("/api/v1/jobs").status, 200);
    // Health needs none, so that a load balancer can ask.
    assert_eq!(server.get_with("/api/v1/health", &[]).status, 200);
    server.stop();

    // Off loopback with no token file: one is made in the data folder and printed once.
    let dir = tempfile::tempdir().unwrap();
    let mut open = Server::start(dir.path(), &["--bind", "0.0.0.0:0"]);
    let token = open
        .token
        .clone()
        .expect("a token is generated off loopback");
    let kept = dir.path().join("data/server-token");
    assert_eq!(std::fs::read_to_string(&kept).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(open.get_with("/api/v1/jobs", &[]).status, 401);
    assert_eq!(open.get("/api/v1/jobs").status, 200);
    open.stop();
    let again = Server::start(dir.path(), &["--bind", "0.0.0.0:0"]);
    assert!(
        !again.log().contains(&token),
        "the token is printed only when it is made"
    );
    assert_eq!(again.get_with("/api/v1/jobs", &[]).status, 401);
    assert_eq!(
        again
            .get_with(
                "/api/v1/jobs",
                &[("Authorization", &format!("Bearer {token}"))]
            )
            .status,
        200
    );
}

#[test]
fn uploads_over_the_limit_are_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-upload-mb", "1"]);
    let big = song_wav(dir.path(), "big.wav", 12.0); // about 2 MB
    assert!(std::fs::metadata(&big).unwrap().len() > 2_000_000);
    // Refused from its stated length, before its body is read: the client may still be
    // sending when the answer comes, so it is sent by hand and the answer read whatever
    // the writes met.
    let (ct, body) = multipart(&big, &[]);
    let answer = post_by_hand(
        server.addr,
        &ct,
        &format!("Content-Length: {}", body.len()),
        |stream| {
            let _ = stream.write_all(&body);
        },
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");

    // A client that states no length is stopped once it passes the limit.
    let answer = post_by_hand(server.addr, &ct, "Transfer-Encoding: chunked", |stream| {
        for chunk in body.chunks(64 * 1024) {
            if write!(stream, "{:x}\r\n", chunk.len()).is_err()
                || stream.write_all(chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                return; // the server stopped reading: what it answered is read next
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
    });
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");

    let uploads = dir.path().join("data/uploads");
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        0,
        "nothing kept"
    );
    // A song within the limit is still taken.
    let small = song_wav(dir.path(), "small.wav", 2.0);
    assert_eq!(server.upload(&small, &[]).status, 201);
}

/// A form posted on a raw connection: `send` writes the body (and may meet a closed
/// socket), then the whole answer is read.
fn post_by_hand(
    addr: std::net::SocketAddr,
    content_type: &str,
    length_header: &str,
    send: impl FnOnce(&mut TcpStream),
) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n{length_header}\r\n\r\n"
    )
    .unwrap();
    send(&mut stream);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_slow_client_is_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--header-timeout", "2"]);
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        // One header byte every half second, never finishing.
        for i in 0..40 {
            if slow
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .is_err()
            {
                break;
            }
            let mut byte = [0u8; 512];
            slow.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            match slow.read(&mut byte) {
                Ok(0) => return Instant::now(),
                Ok(_) => return Instant::now(),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return Instant::now(),
            }
        }
        Instant::now()
    });
    // Meanwhile another client is answered at once.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(server.get("/api/v1/health").status, 200);
        assert!(t.elapsed() < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(200));
    }
    let cut = trickle.join().unwrap().duration_since(started);
    assert!(
        cut >= Duration::from_millis(1500) && cut < Duration::from_secs(6),
        "the slow client was cut off after {cut:?}"
    );
    // And a client that connects and sends nothing at all.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let _ = silent.read(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "a silent client held on for {:?}",
        t.elapsed()
    );
}

#[test]
fn malformed_forms_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let song = song_wav(dir.path(), "song.wav", 1.0);
    let (ct, body) = multipart(&song, &[]);
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "cut off",
            ct.clone(),
            body[..body.len() / 2].to_vec(),
            "not a well-formed form",
        ),
        (
            "wrong boundary",
            "multipart/form-data; boundary=nope".into(),
            body.clone(),
            "not a well-formed form",
        ),
        (
            "no boundary",
            "multipart/form-data".into(),
            body.clone(),
            "not a form",
        ),
        (
            "no file field",
            "multipart/form-data; boundary=b".into(),
            b"--b\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\nflac\r\n--b--\r\n"
                .to_vec(),
            "no “file” field",
        ),
        (
            "garbage",
            "multipart/form-data; boundary=b".into(),
            b"\x00\x01\x02 this is not a form at all".to_vec(),
            "not a well-formed form",
        ),
        (
            "two files",
            ct.clone(),
            {
                let mut two =
                    body[..body.len() - "--stemdeck-test-boundary-7d1f--\r\n".len()].to_vec();
                let (_, second) = multipart(&song, &[]);
                two.extend_from_slice(&second);
                two
            },
            "one file per job",
        ),
    ];
    for (what, content_type, body, words) in cases {
        // The server may answer before it has read the whole form (it knows from the
        // headers alone that there is no boundary), so the form is sent by hand and the
        // answer read whatever the writes met.
        let answer = post_by_hand(
            server.addr,
            &content_type,
            &format!("Content-Length: {}", body.len()),
            |stream| {
                let _ = stream.write_all(&body);
            },
        );
        let status: u16 = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no answer: {answer:?}"));
        assert!((400..500).contains(&status), "{what}: {answer}");
        let json = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or("");
        let message = serde_json::from_str::<serde_json::Value>(json)
            .unwrap_or_else(|e| panic!("{what}: {e}: {answer}"))["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(words), "{what}: {message}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/uploads"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        server.get("/api/v1/jobs").json().as_array().unwrap().len(),
        0
    );
}

#[test]
fn rapid_submissions_are_limited_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--submit-burst", "20", "--submit-per-minute", "120"],
    );
    let mut allowed = 0;
    let mut limited = 0;
    let mut retry_after = None;
    let started = Instant::now();
    for _ in 0..200 {
        // Not a video: an allowed request is refused on its merits (400), not created.
        let reply = server.post_json("/api/v1/jobs", json!({"link": "not a link"}));
        match reply.status {
            400 => allowed += 1,
            429 => {
                limited += 1;
                assert_eq!(reply.json()["error"], "rate_limited");
                // Its body unread, the connection is closed, and the client is told.
                assert_eq!(reply.header("connection"), Some("close"));
                retry_after = reply.header("retry-after").map(str::to_owned);
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, plus two a second refilled while the loop ran.
    let most = 20 + (elapsed * 2.0).ceil() as usize + 1;
    assert!(
        allowed >= 20 && allowed <= most,
        "{allowed} allowed in {elapsed:.1} s"
    );
    assert_eq!(allowed + limited, 200);
    assert!(limited >= 150, "{limited}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Other routes are not limited meanwhile.
    assert_eq!(server.get("/api/v1/jobs").status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let song = song_wav(dir.path(), "song.wav", 1.0);
    let recovered = server.upload(&song, &[]);
    assert_eq!(recovered.status, 201, "{}", recovered.text());
    // FL-BT's submit shares the limit.
    let mut compat_limited = false;
    for _ in 0..40 {
        if server
            .send("POST", "/api/submit/not-a-video", "text/plain", b"")
            .status
            == 429
        {
            compat_limited = true;
            break;
        }
    }
    assert!(compat_limited);
}

#[test]
fn no_parameter_reaches_a_file_it_should_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let song = song_wav(dir.path(), "song.wav", 1.0);
    let id = server.upload(&song, &[]).json()["id"].as_u64().unwrap();
    server.wait_finished(id, Duration::from_secs(120));
    // Secrets a traversal would reach: a file in the data folder and the system's.
    std::fs::write(dir.path().join("data/secret.txt"), "TOP-SECRET-7781").unwrap();
    let attacks = [
        "..%2F..%2Fsecret.txt",
        "..%2fsecret.txt",
        "%2e%2e%2f%2e%2e%2fsecret.txt",
        "....%2F%2Fsecret.txt",
        "..%5C..%5Csecret.txt",
        "%2Fetc%2Fpasswd",
        "..%252F..%252Fetc%252Fpasswd",
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "library.json",
        "..",
    ];
    let mut tried = 0;
    for attack in attacks {
        let paths = [
            format!("/api/v1/jobs/{attack}"),
            format!("/api/v1/jobs/{attack}/zip"),
            format!("/api/v1/jobs/{attack}/events"),
            format!("/api/v1/jobs/{id}/stems/{attack}"),
            format!("/api/v1/jobs/{id}/stems/vocals%2F{attack}"),
            format!("/api/status/{attack}"),
            format!("/api/download/{attack}"),
            format!("/{attack}"),
        ];
        for path in paths {
            let reply = server.get(&path);
            tried += 1;
            assert!(
                (400..500).contains(&reply.status),
                "{path}: {}",
                reply.status
            );
            let text = reply.text();
            assert!(
                !text.contains("TOP-SECRET") && !text.contains("root:x:0"),
                "{path}: {text}"
            );
        }
        for (method, path) in [
            ("POST", format!("/api/v1/jobs/{attack}/retry")),
            ("POST", format!("/api/v1/jobs/{attack}/cancel")),
            ("DELETE", format!("/api/v1/jobs/{attack}")),
            ("DELETE", format!("/api/v1/models/{attack}")),
            ("POST", format!("/api/v1/models/{attack}/download")),
            ("POST", format!("/api/submit/{attack}")),
        ] {
            let reply = server.send(method, &path, "application/json", b"");
            tried += 1;
            assert!(
                (400..500).contains(&reply.status),
                "{method} {path}: {}",
                reply.status
            );
        }
    }
    // Options cannot name paths either: the upload's own name is cut to a file name.
    let evil = dir.path().join("evil.wav");
    std::fs::copy(&song, &evil).unwrap();
    let (ct, raw) = multipart(&evil, &[]);
    let needle = b"filename=\"evil.wav\"";
    let at = raw.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut crafted = raw[..at].to_vec();
    crafted.extend_from_slice(b"filename=\"../../../../evil.wav\"");
    crafted.extend_from_slice(&raw[at + needle.len()..]);
    let reply = server.send("POST", "/api/v1/jobs", &ct, &crafted);
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["source"]["path"], "evil.wav");
    assert!(!dir.path().join("evil.wav.partial").exists());
    for entry in std::fs::read_dir(dir.path().join("data/uploads")).unwrap() {
        let folder = entry.unwrap().path();
        assert!(folder.is_dir());
    }
    let settings = json!({"job": {"model": "htdemucs", "device": "cpu", "overlap": 0.25, "shifts": 0,
        "sample_format": "int16", "two_stems": null}, "output_dir": "/tmp/evil"});
    let reply = server.send(
        "PUT",
        "/api/v1/settings",
        "application/json",
        settings.to_string().as_bytes(),
    );
    assert_eq!(
        reply.status, 400,
        "the output folder is not the client's to set"
    );
    assert!(tried > 100);
}

#[test]
fn no_cross_origin_access() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let reply = server.get_with("/api/v1/jobs", &[("Origin", "http://evil.example")]);
    assert!(reply.header("access-control-allow-origin").is_none());
    let preflight = server.send_with(
        "OPTIONS",
        "/api/v1/jobs",
        "text/plain",
        b"",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert!(preflight.header("access-control-allow-origin").is_none());
    assert!(
        !(200..300).contains(&preflight.status),
        "{}",
        preflight.status
    );
    // Nothing it serves can be framed or sniffed into another type.
    let page = server.get_with("/api/v1/health", &[]);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
}
