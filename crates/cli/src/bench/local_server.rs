//! Throw-away `mlgrid serve` nodes for a benchmark: this same binary, on free loopback
//! ports, with temporary data directories and a known Owner key; on the embedded store,
//! or on PostgreSQL in a schema of their own that is dropped afterwards.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use sqlx::{Connection, Executor, PgConnection};
use tokio::process::{Child, Command};

/// Where a bench's own servers keep their data.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Run the servers on this PostgreSQL database (in a new schema, dropped afterwards)
    /// instead of the embedded store.
    #[arg(long, conflicts_with = "server")]
    pub database_url: Option<String>,
    /// Servers to start on the database; requests are spread across them round-robin.
    #[arg(long, default_value_t = 1, requires = "database_url")]
    pub nodes: usize,
}

pub struct LocalServer {
    child: Child,
    pub url: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A random string of `n` hex digits.
fn random_hex(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

impl LocalServer {
    /// Starts `mlgrid serve` with extra flags and environment.
    async fn start(flags: &[String], env: &[(&str, &str)]) -> anyhow::Result<LocalServer> {
        let dir = tempfile::tempdir().context("creating a temporary data directory")?;
        let port = free_loopback_port()?;
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(flags)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting `mlgrid serve`")?;
        let mut server = LocalServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            dir,
        };
        server.wait_ready().await?;
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

    /// A `/proc/PID/status` field of the server in kB, as MB.
    fn status_mb(&self, field: &str) -> Option<f64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(super::stats::round3(kb / 1024.0))
    }

    /// The server's peak resident memory so far, in MB.
    fn peak_rss_mb(&self) -> Option<f64> {
        self.status_mb("VmHWM:")
    }

    /// The embedded store's files: the database and its write-ahead log, in bytes.
    fn store_files(&self) -> Option<StoreFiles> {
        let database = self.dir.path().join(crate::commands::serve::DATABASE_FILE);
        let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let wal = database.with_extension("db-wal");
        database.exists().then(|| StoreFiles {
            database_bytes: size(&database),
            wal_bytes: size(&wal),
        })
    }

    /// Stops the server with SIGTERM and waits for its graceful shutdown.
    async fn stop(mut self) -> anyhow::Result<()> {
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

/// The sizes of an embedded store's files.
#[derive(Debug, Clone, Copy)]
pub struct StoreFiles {
    pub database_bytes: u64,
    pub wal_bytes: u64,
}

/// A server's resident memory, CPU time used and store files at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rss_mb: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub store: Option<StoreFiles>,
}

/// A schema of its own in a PostgreSQL database, dropped with the guard (after the
/// sessions of the nodes that used it are ended).
struct ScratchSchema {
    database_url: String,
    name: String,
}

impl ScratchSchema {
    async fn create(database_url: &str) -> anyhow::Result<ScratchSchema> {
        let name = format!("mlgrid_bench_{}", random_hex(12));
        let mut conn = PgConnection::connect(database_url)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("connecting to {}", crate::commands::migrate::shown(database_url)))?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await
            .with_context(|| format!("creating the schema {name} for the bench"))?;
        conn.close().await?;
        Ok(ScratchSchema {
            database_url: database_url.to_owned(),
            name,
        })
    }

    /// The URL of a node working in this schema, known to PostgreSQL by the schema's name.
    fn node_url(&self) -> String {
        let separator = if self.database_url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options%5Bsearch_path%5D={}&application_name={}",
            self.database_url, self.name, self.name
        )
    }

    async fn drop_schema(database_url: &str, name: &str) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(database_url).await?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(name)
            .execute(&mut conn)
            .await?;
        conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
            .await?;
        conn.close().await?;
        Ok(())
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        // Drop cannot await, and may run on the runtime's only free thread: a runtime of
        // its own on a thread of its own.
        let (url, name) = (self.database_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(ScratchSchema::drop_schema(&url, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => eprintln!("bench: dropped the schema {}", self.name),
            Ok(Err(e)) => eprintln!("bench: could not drop the schema {}: {e:#}", self.name),
            Err(_) => eprintln!("bench: could not drop the schema {}", self.name),
        }
    }
}

/// The servers a bench started: one on the embedded store, or N on one PostgreSQL
/// database, sharing the server secret and the first Owner's key.
pub struct LocalCluster {
    servers: Vec<LocalServer>,
    pub api_key: String,
    description: String,
    /// Declared after the servers: dropped after they are killed.
    _schema: Option<ScratchSchema>,
}

impl LocalCluster {
    /// Starts the servers with extra `serve` flags.
    pub async fn start(args: &ClusterArgs, flags: &[&str]) -> anyhow::Result<LocalCluster> {
        if args.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        let api_key = format!("bench-{}-{}", random_hex(32), random_hex(32));
        let secret = base64_secret();
        let mut flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let schema = match &args.database_url {
            Some(url) => {
                let schema = ScratchSchema::create(url).await?;
                flags.extend(["--database-url".to_owned(), schema.node_url()]);
                Some(schema)
            }
            None => None,
        };
        let env = [
            ("MLGRID_BOOTSTRAP_KEY", api_key.as_str()),
            ("MLGRID_SECRET", secret.as_str()),
        ];
        let mut servers = Vec::with_capacity(args.nodes);
        for node in 0..args.nodes {
            let mut node_flags = flags.clone();
            node_flags.extend(["--node-id".to_owned(), format!("bench-{node}")]);
            servers.push(LocalServer::start(&node_flags, &env).await?);
        }
        let description = match (&schema, args.nodes) {
            (None, _) => "local, embedded store".to_owned(),
            (Some(_), 1) => "local, PostgreSQL, 1 node".to_owned(),
            (Some(_), n) => format!("local, PostgreSQL, {n} nodes"),
        };
        Ok(LocalCluster {
            servers,
            api_key,
            description,
            _schema: schema,
        })
    }

    /// What was started, where, for a progress line.
    pub fn started(&self) -> String {
        let urls: Vec<&str> = self.servers.iter().map(|s| s.url.as_str()).collect();
        match &self._schema {
            Some(schema) => format!(
                "started {} at {} (schema {})",
                self.description,
                urls.join(", "),
                schema.name
            ),
            None => format!(
                "started {} at {} (data in {})",
                self.description,
                urls[0],
                self.servers[0].dir.path().display()
            ),
        }
    }

    /// The data directory of the first node.
    pub fn data_dir(&self) -> &std::path::Path {
        self.servers[0].dir.path()
    }

    /// The base URL of every node, the first being where the bench sets up.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url.clone()).collect()
    }

    /// What the bench ran against, for its result line.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The highest peak resident memory of a node so far, in MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        self.servers
            .iter()
            .filter_map(LocalServer::peak_rss_mb)
            .max_by(f64::total_cmp)
    }

    /// CPU time all nodes have used so far, in seconds; `None` when `/proc` cannot say.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.servers
            .iter()
            .map(|s| s.child.id().and_then(super::stats::cpu_seconds))
            .sum()
    }

    /// The first node's memory now, and its embedded store's files (none on PostgreSQL).
    pub fn sample(&self) -> Sample {
        let first = &self.servers[0];
        Sample {
            rss_mb: first.status_mb("VmRSS:"),
            cpu_seconds: first.child.id().and_then(super::stats::cpu_seconds),
            store: first.store_files(),
        }
    }

    /// Stops every node gracefully, then drops the schema they worked in.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for server in self.servers {
            if let Err(e) = server.stop().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A fresh server secret, as `MLGRID_SECRET` takes it.
fn base64_secret() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
