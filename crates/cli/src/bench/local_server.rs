//! A throw-away `mlgrid serve` for a benchmark: this same binary, on a free loopback
//! port, with a temporary data directory and a known Owner key.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub struct LocalServer {
    child: Child,
    pub url: String,
    pub api_key: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl LocalServer {
    pub async fn start() -> anyhow::Result<LocalServer> {
        LocalServer::start_with(&[]).await
    }

    /// Starts the server with extra `serve` flags.
    pub async fn start_with(flags: &[&str]) -> anyhow::Result<LocalServer> {
        let dir = tempfile::tempdir().context("creating a temporary data directory")?;
        let port = free_loopback_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let api_key = format!(
            "bench-{}-{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(flags)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .env("MLGRID_BOOTSTRAP_KEY", &api_key)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting `mlgrid serve`")?;
        let mut server = LocalServer {
            child,
            url,
            api_key,
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        eprintln!(
            "bench: started a server at {} (data in a temporary directory)",
            server.url
        );
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http
                .get(format!("{}/healthz", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not answer /healthz within 30 s")
    }

    /// The server's peak resident memory so far, in MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(super::stats::round3(kb / 1024.0))
    }

    /// Stops the server with SIGTERM and waits for its graceful shutdown.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with a pid we spawned and have not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!(
                        "the server exited with {status}: {}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
                Ok(())
            }
            Err(_) => bail!("the server did not shut down within 30 s of SIGTERM"),
        }
    }
}
