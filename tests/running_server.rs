//! A real `stemdeck serve` for the server tests: its own data folder, the small fixture
//! model under the htdemucs name, a fake yt-dlp for links (the built-in downloader pointed
//! at a proxy that refuses connections, as offline), and an HTTP client that hands back
//! every status rather than failing on 4xx.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub dir: PathBuf,
    pub token: Option<String>,
    /// Every line the server wrote on stdout and stderr.
    pub output: Arc<Mutex<Vec<String>>>,
    pub agent: ureq::Agent,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The fixture song the tests upload: `seconds` of the test song as a WAV.
pub fn song_wav(dir: &Path, name: &str, seconds: f32) -> PathBuf {
    let path = dir.join(name);
    crate::common::write_wav(&path, 44100, &crate::common::test_song(44100, seconds));
    path
}

/// Keeps `cmd` off the internet, as on a machine without it: every HTTP client it has
/// goes through a proxy on a port where nothing listens.
pub fn offline(cmd: &mut Command) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
    ] {
        cmd.env(var, &proxy);
    }
}

impl Server {
    /// Starts `stemdeck serve` on a free loopback port with `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::start_with(dir, extra, &[])
    }

    pub fn start_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let models = dir.join("models");
        std::fs::create_dir_all(&models).unwrap();
        let fixture = models.join("955717e8-8726e21a.th");
        if !fixture.exists() {
            std::fs::copy(crate::common::tiny_th_weights(), &fixture).unwrap();
        }
        let tools = dir.join("tools");
        if !tools.exists() {
            std::fs::create_dir_all(&tools).unwrap();
            std::fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-yt-dlp.sh"),
                tools.join("yt-dlp"),
            )
            .unwrap();
            let audio = song_wav(dir, "video-audio.wav", 2.0);
            std::fs::write(
                tools.join("fake-yt-dlp.conf"),
                format!("AUDIO='{}'\nTITLE='Fake Video Song'\n", audio.display()),
            )
            .unwrap();
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stemdeck"));
        let has_bind = extra.contains(&"--bind");
        cmd.arg("serve").arg("--data-dir").arg(dir.join("data"));
        if !has_bind {
            cmd.args(["--bind", "127.0.0.1:0"]);
        }
        cmd.args(extra)
            .env("STEMDECK_MODEL_DIR", &models)
            .env("STEMDECK_CACHE_DIR", dir.join("cache"))
            .env("PATH", format!("{}:/usr/bin:/bin", tools.display()))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        offline(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("stemdeck serve starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    output.lock().unwrap().push(line);
                }
            });
        }
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let mut addr = None;
        let mut token = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("Stemdeck is serving on http://") {
                        addr = Some(rest.trim_end_matches('/').parse().unwrap());
                    }
                    if let Some((_, t)) = line.split_once("): ") {
                        token = Some(t.trim().to_owned());
                    }
                    if addr.is_some() && (token.is_some() || !line.contains("token")) {
                        // The token line, when there is one, follows at once.
                        if let Ok(next) = rx.recv_timeout(Duration::from_millis(300))
                            && let Some((_, t)) = next.split_once("): ")
                        {
                            token = Some(t.trim().to_owned());
                        }
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "stemdeck serve exited ({status}): {}",
                            output.lock().unwrap().join("\n")
                        );
                    }
                }
                Err(_) => break,
            }
        }
        let addr: std::net::SocketAddr = addr.unwrap_or_else(|| {
            panic!(
                "stemdeck serve did not say where it listens: {}",
                output.lock().unwrap().join("\n")
            )
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let port = addr.port();
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            addr,
            dir: dir.to_owned(),
            token,
            output,
            agent,
        }
    }

    pub fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    fn finish(&self, mut response: ureq::http::Response<ureq::Body>) -> Reply {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(512 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.finish(request.call().expect("the server answers"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.get_with(path, &self.auth())
    }

    pub fn send(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        self.send_with(method, path, content_type, body, &self.auth())
    }

    pub fn send_with(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", content_type);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(body.to_vec()).unwrap();
        self.finish(self.agent.run(request).expect("the server answers"))
    }

    pub fn post_json(&self, path: &str, json: serde_json::Value) -> Reply {
        self.send(
            "POST",
            path,
            "application/json",
            json.to_string().as_bytes(),
        )
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, "application/json", b"")
    }

    pub fn auth(&self) -> Vec<(&'static str, &'static str)> {
        match &self.token {
            // Leaked for the test's life: a few bytes per server.
            Some(t) => vec![(
                "Authorization",
                Box::leak(format!("Bearer {t}").into_boxed_str()),
            )],
            None => Vec::new(),
        }
    }

    /// Uploads `file` as a new job with `fields` as options.
    pub fn upload(&self, file: &Path, fields: &[(&str, &str)]) -> Reply {
        let (content_type, body) = multipart(file, fields);
        self.send("POST", "/api/v1/jobs", &content_type, &body)
    }

    /// Polls job `id` until it has finished, and returns it.
    pub fn wait_finished(&self, id: u64, patience: Duration) -> serde_json::Value {
        let deadline = Instant::now() + patience;
        loop {
            let job = self.get(&format!("/api/v1/jobs/{id}")).json();
            let stage = job["stage"].as_str().unwrap_or_default().to_owned();
            if ["done", "failed", "cancelled", "interrupted"].contains(&stage.as_str()) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {stage} after {patience:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server as a service manager would (SIGTERM) and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A multipart/form-data body with `file` as the field `file`.
pub fn multipart(file: &Path, fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "stemdeck-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let name = file.file_name().unwrap().to_string_lossy();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Reads Server-Sent Events from `path` until `stop` says so (or `patience` runs out),
/// returning each event's name and data.
pub fn read_events(
    server: &Server,
    path: &str,
    patience: Duration,
    stop: impl Fn(&str, &serde_json::Value) -> bool,
) -> Vec<(String, serde_json::Value)> {
    read_events_of(server, "GET", path, patience, stop)
}

/// [`read_events`] from a request with another method (a model download is a POST).
pub fn read_events_of(
    server: &Server,
    method: &str,
    path: &str,
    patience: Duration,
    stop: impl Fn(&str, &serde_json::Value) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.base))
        .header("Accept", "text/event-stream");
    for (k, v) in server.auth() {
        request = request.header(k, v);
    }
    let response = server
        .agent
        .run(request.body(Vec::new()).unwrap())
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 200, "events from {path}");
    let mut reader = BufReader::new(response.into_body().into_reader());
    let mut events = Vec::new();
    let mut name = String::new();
    let deadline = Instant::now() + patience;
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let text = line.trim_end();
        if let Some(n) = text
            .strip_prefix("event: ")
            .or_else(|| text.strip_prefix("event:"))
        {
            name = n.trim().to_owned();
        } else if let Some(data) = text
            .strip_prefix("data: ")
            .or_else(|| text.strip_prefix("data:"))
        {
            let value: serde_json::Value = serde_json::from_str(data.trim()).unwrap_or_default();
            let done = stop(&name, &value);
            events.push((name.clone(), value));
            if done {
                break;
            }
        }
    }
    events
}
