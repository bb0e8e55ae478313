//! A real `redis-server` for the tests (the Debian package; `scripts/setup-system.sh`
//! installs it): its own folder and a free loopback port, with the append-only file
//! synced on every write, so that a restart keeps everything acknowledged.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl RedisServer {
    pub fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(dir, port)
    }

    /// On `port` again, after a restart: the same folder, so the same append-only file.
    pub fn start_on(dir: &Path, port: u16) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs these tests: install it (scripts/setup-system.sh does)");
        let server = Self {
            child,
            port,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// True once it answers a PING, spoken by hand so that any test can ask.
    fn answers(&self) -> bool {
        let Ok(mut con) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = con.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        con.write_all(b"PING\r\n").is_ok()
            && con.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Killed outright, as a crash or a power cut would stop it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
