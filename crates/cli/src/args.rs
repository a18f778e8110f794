//! The command line, shaped like the `az eventgrid` and `az ml` commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mlgrid",
    version,
    about = "Self-hosted event grid for machine-learning workspaces"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the client commands find the server when --server is not given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

#[derive(Debug, Args)]
pub struct Global {
    /// URL of the mlgrid server [default: http://127.0.0.1:7070]; benchmarks start
    /// their own server unless it is given.
    #[arg(long, global = true, env = "MLGRID_SERVER")]
    pub server: Option<String>,
    /// API key; defaults to the admin.key in --data-dir.
    #[arg(long, global = true, env = "MLGRID_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Data directory of the server (holds admin.key).
    #[arg(
        long,
        global = true,
        env = "MLGRID_DATA_DIR",
        default_value = "./mlgrid-data"
    )]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded store in --data-dir).
    Serve(ServeArgs),
    /// Manage Azure ML workspaces.
    #[command(subcommand)]
    Workspace(SourceCommand),
    /// Manage custom topics and their access keys.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Read the event log of a workspace or topic.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Measure performance; prints one JSON object on the last line.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MLGRID_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Base URL clients use to reach this server (shown as topic endpoints); defaults to
    /// the Host of each request.
    #[arg(long, env = "MLGRID_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest publish request in bytes (Event Grid: 1 MB).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Log format on stderr.
    #[arg(long, env = "MLGRID_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct NameArg {
    #[arg(long, short = 'n')]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CreateSourceArgs {
    #[arg(long, short = 'n')]
    pub name: String,
    /// Azure subscription id for the resource path (default: the all-zero GUID).
    #[arg(long)]
    pub subscription_id: Option<String>,
    /// Resource group for the resource path (default: mlgrid).
    #[arg(long, short = 'g')]
    pub resource_group: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    Create(CreateSourceArgs),
    List,
    Show(NameArg),
    Delete(NameArg),
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    Create(CreateSourceArgs),
    List,
    Show(NameArg),
    Delete(NameArg),
    /// List or regenerate the access keys.
    #[command(subcommand)]
    Key(TopicKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum TopicKeyCommand {
    List(NameArg),
    Regenerate(RegenerateArgs),
}

#[derive(Debug, Args)]
pub struct RegenerateArgs {
    #[arg(long, short = 'n')]
    pub name: String,
    #[arg(long, value_parser = ["key1", "key2"])]
    pub key_name: String,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SourceSelector {
    /// Read a workspace's events.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Read a custom topic's events.
    #[arg(long)]
    pub topic: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events after a sequence number.
    List {
        #[command(flatten)]
        source: SourceSelector,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Follow new events live, one JSON line each, until interrupted.
    Tail {
        #[command(flatten)]
        source: SourceSelector,
        /// Start after this sequence number (default: only events from now on).
        #[arg(long)]
        after: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Publish Event Grid events to a custom topic and measure throughput and latency.
    Publish(crate::bench::publish::PublishArgs),
}
