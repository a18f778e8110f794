//! A real `mlgrid serve` process on a loopback port, and helpers to drive it.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod receiver;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_mlgrid");

pub struct Server {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `mlgrid serve` on `dir`, configured through the environment variables.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts `mlgrid serve` on `dir` with extra flags.
    pub fn start_with(dir: &Path, flags: &[&str]) -> Server {
        Server::start_with_env(dir, flags, &[])
    }

    /// Starts `mlgrid serve` on `dir` with extra flags and environment variables (the
    /// server secret and bootstrap key are unset unless given).
    pub fn start_with_env(dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .args(flags)
            .env("MLGRID_LISTEN", format!("127.0.0.1:{port}"))
            .env("MLGRID_DATA_DIR", dir)
            .env_remove("MLGRID_BOOTSTRAP_KEY")
            .env_remove("MLGRID_SECRET")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_owned(),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["--server", &self.url, "--data-dir"])
            .arg(&self.dir)
            .args(args)
            .env_remove("MLGRID_API_KEY")
            .output()
            .unwrap()
    }

    /// Runs a CLI command that must succeed and returns its JSON output.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops the server with SIGTERM and returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        status.success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn publish(
    http: &reqwest::blocking::Client,
    endpoint: &str,
    key: &str,
    events: &Value,
) -> reqwest::Result<reqwest::blocking::Response> {
    http.post(endpoint)
        .header("aeg-sas-key", key)
        .header("content-type", "application/json")
        .body(events.to_string())
        .send()
}

/// Orders `e{n}` for each `n` in `numbers`, all on one subject, as one request's array.
pub fn orders(numbers: std::ops::Range<usize>) -> Value {
    numbers
        .map(|n| {
            json!({"id": format!("e{n}"), "subject": "orders/1", "eventType": "Shop.OrderPlaced",
                   "eventTime": "2026-11-26T16:00:00Z", "data": {"n": n}})
        })
        .collect()
}

pub fn event(id: &str) -> Value {
    json!({"id": id, "subject": "cli/test", "eventType": "Cli.Test", "eventTime": "2026-11-26T16:00:00Z", "data": {"id": id}})
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
