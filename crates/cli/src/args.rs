//! The command line, shaped like the `az eventgrid` and `az ml` commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mlgrid_core::retention::RetentionSpan;

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
    #[arg(long, global = true, env = "MLGRID_DATA_DIR", default_value = "./mlgrid-data")]
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
    /// Run a node: the embedded store in --data-dir, or PostgreSQL with --database-url.
    Serve(ServeArgs),
    /// Show the whole loop on a throw-away server: a model registered, its event
    /// received by a webhook and triggering a pipeline, whose RunCompleted comes back.
    Demo,
    /// Create or update the PostgreSQL schema (`serve` also does it at start).
    Migrate(MigrateArgs),
    /// Manage Azure ML workspaces.
    #[command(subcommand)]
    Workspace(SourceCommand),
    /// Manage custom topics and their access keys.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Experiment runs: start, complete, fail, cancel, metrics.
    #[command(subcommand)]
    Run(RunCommand),
    /// Experiments of a workspace.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Published pipelines: publish a YAML definition, submit runs, enable and disable.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Pipeline endpoints: stable names whose default pipeline can be switched.
    #[command(subcommand, name = "pipeline-endpoint")]
    PipelineEndpoint(PipelineEndpointCommand),
    /// Schedules of published pipelines: recurrences in Azure ML's terms, their coming
    /// fire times and the runs they started.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The model registry, and deploying models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Deployments (services) of a workspace.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Registered datasets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Datastores of a workspace: local folders, Azure Blob containers, S3 and GCS buckets.
    #[command(subcommand)]
    Datastore(DatastoreCommand),
    /// Event subscriptions of workspaces and topics (like `az eventgrid event-subscription`).
    #[command(subcommand, name = "event-subscription")]
    EventSubscription(Box<EventSubscriptionCommand>),
    /// Principals and their API keys.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Roles of principals on workspaces and topics.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Read the event log of a workspace or topic.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Remove now what the retentions let go (the server does every 10 seconds anyway):
    /// events, delivered deliveries, attempts and dead letters. Takes Owner on everything.
    Prune(PruneArgs),
    /// Measure performance; prints one JSON object on the last line.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Administration with access to the database rather than an API key.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Give a principal (created unless --name names one) Owner on all workspaces and topics
    /// and a new API key, printed once: the way back in when no Owner has a usable key.
    /// Writes to the database directly (the embedded one in --data-dir, or
    /// --database-url), beside a running server or a stopped one.
    Recover(RecoverArgs),
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The PostgreSQL database the nodes share, instead of the embedded store in --data-dir.
    #[arg(long, env = "MLGRID_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The principal to create or reuse [default: recovered-owner-<UTC time>].
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MLGRID_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// PostgreSQL shared by the nodes of a cluster (postgres://user:password@host:port/database,
    /// `?sslmode=require` for TLS) instead of the embedded store in --data-dir.
    #[arg(long, env = "MLGRID_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// This node's name in logs, /healthz and /metrics [default: HOSTNAME:PORT].
    #[arg(long, env = "MLGRID_NODE_ID")]
    pub node_id: Option<String>,
    /// Base URL clients and webhook receivers use to reach this server (topic endpoints,
    /// validation URLs) [default: http:// and the --listen address; HOSTNAME for an
    /// unspecified address]. Never taken from a request's Host header.
    #[arg(long, env = "MLGRID_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Serve /metrics without an API key on this separate address, for Prometheus on a
    /// private network. On --listen, /metrics takes a key with a role on everything.
    #[arg(long, env = "MLGRID_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, wait at most this many seconds for requests in flight and
    /// background work to finish, then exit anyway (what is acknowledged is stored).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub shutdown_timeout: u64,
    /// Most client connections open at once; further clients wait until one closes.
    /// Lowered to fit the open-file limit (ulimit -n) when that is smaller.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Largest publish request in bytes (Event Grid: 1 MB).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Log format on stderr.
    #[arg(long, env = "MLGRID_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Let webhooks reach private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7,
    /// fec0::/10, 64:ff9b:1::/48, and IPv6 addresses that carry a private IPv4 address).
    #[arg(long)]
    pub allow_private_webhooks: bool,
    /// Let webhooks reach loopback addresses (127/8, ::1, and IPv6 addresses that carry
    /// 127/8, such as ::ffff:127.0.0.1): for tests and demos.
    #[arg(long)]
    pub allow_loopback_webhooks: bool,
    /// Let Contributors create subscriptions with skipValidation (--skip-validation);
    /// without it, skipping the endpoint's validation handshake takes Owner.
    #[arg(long, env = "MLGRID_ALLOW_CONTRIBUTOR_SKIP_VALIDATION")]
    pub allow_contributor_skip_validation: bool,
    /// How long event logs keep events, unless a workspace or topic sets its own
    /// (--retention of `workspace|topic create|update`): 30m, 12h, 7d, ... Events a
    /// subscription has yet to deliver stay until delivered or dead-lettered.
    #[arg(long, env = "MLGRID_RETENTION", default_value = "7d", value_name = "SPAN")]
    pub retention: RetentionSpan,
    /// How long delivered deliveries and delivery attempts are kept (deliveryStats,
    /// attempts, a subscription's matched events).
    #[arg(long, env = "MLGRID_DELIVERY_RETENTION", default_value = "24h", value_name = "SPAN")]
    pub delivery_retention: RetentionSpan,
    /// How long dead letters are kept unless purged before.
    #[arg(
        long,
        env = "MLGRID_DEAD_LETTER_RETENTION",
        default_value = "30d",
        value_name = "SPAN"
    )]
    pub dead_letter_retention: RetentionSpan,
    /// Ticks each schedule keeps on record (`schedule runs`); older ones are pruned in
    /// the background, except queued ticks and started ones whose run is not over.
    #[arg(
        long,
        env = "MLGRID_SCHEDULE_FIRES_KEPT",
        default_value_t = mlgrid_server::prune::DEFAULT_SCHEDULE_FIRES,
        value_parser = clap::value_parser!(u32).range(1..),
        value_name = "N"
    )]
    pub schedule_fires_kept: u32,
    /// Seconds between background pruning passes; tests shorten it.
    #[arg(long, default_value_t = 10, hide = true)]
    pub prune_every_seconds: u64,
    /// Multiply the retry schedule (10 s, 30 s, 1 min, ...) by this; tests use 0.001.
    #[arg(long, default_value_t = 1.0, hide = true)]
    pub retry_time_scale: f64,
    /// How long a claimed delivery is reserved for this node: when the node dies, other
    /// nodes retry its deliveries after this. Tests shorten it.
    #[arg(long, default_value_t = 90, hide = true)]
    pub delivery_lease_seconds: u64,
    /// Most pipeline steps this node runs at once [default: the number of CPU cores].
    #[arg(long, env = "MLGRID_MAX_PARALLEL_STEPS")]
    pub max_parallel_steps: Option<usize>,
    /// How long a running step is reserved for this node: when the node dies, its steps
    /// are retried or failed after this. Tests shorten it.
    #[arg(long, default_value_t = 30, hide = true)]
    pub step_lease_seconds: u64,
    /// How long the scheduler lease runs: when the node firing schedules dies, another
    /// takes over within this and a third of it. Tests shorten it.
    #[arg(long, default_value_t = 30, hide = true)]
    pub scheduler_lease_seconds: u64,
    /// The shortest polling interval a change schedule may have, in seconds. Tests lower
    /// it (with `schedule create --polling-interval-seconds`); a minute otherwise.
    #[arg(long, default_value_t = 60, hide = true)]
    pub min_polling_seconds: u64,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove nothing; list per workspace and topic what would go.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database (postgres://user:password@host:port/database).
    #[arg(long, env = "MLGRID_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
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
    /// How long its events are kept: 30m, 12h, 7d, ... [default: the server's --retention].
    #[arg(long, value_name = "SPAN")]
    pub retention: Option<RetentionSpan>,
    /// At most this many bytes of event bodies are kept; the oldest go first.
    #[arg(long, value_name = "BYTES")]
    pub retention_bytes: Option<u64>,
}

#[derive(Debug, Args)]
pub struct UpdateSourceArgs {
    #[arg(long, short = 'n')]
    pub name: String,
    /// How long its events are kept (30m, 12h, 7d, ...), or `default` for the server's.
    #[arg(long, value_name = "SPAN|default")]
    pub retention: Option<String>,
    /// At most this many bytes of event bodies are kept, or `none` for no limit.
    #[arg(long, value_name = "BYTES|none")]
    pub retention_bytes: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    Create(CreateSourceArgs),
    List,
    /// Show one, with its retention, first available and last sequence and stored bytes.
    Show(NameArg),
    /// Change the retention; a flag left out keeps its current setting.
    Update(UpdateSourceArgs),
    Delete(NameArg),
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    Create(CreateSourceArgs),
    List,
    /// Show one, with its retention, first available and last sequence and stored bytes.
    Show(NameArg),
    /// Change the retention; a flag left out keeps its current setting.
    Update(UpdateSourceArgs),
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
    /// Deliver events to local webhook receivers and measure deliveries/s and latency.
    Deliver(crate::bench::deliver::DeliverArgs),
    /// Route events through many subscriptions' filters and measure events/s on one core.
    Filter(crate::bench::filter::FilterArgs),
    /// Deliver at a steady rate for a long time and watch memory, the write-ahead log and
    /// the database stay bounded, with nothing lost.
    Soak(crate::bench::soak::SoakArgs),
    /// Submit runs of a chain of no-op steps and measure runs/s and the overhead between
    /// steps.
    Pipeline(crate::bench::pipeline::PipelineArgs),
    /// Create many time schedules, most firing every minute, and measure the server's CPU
    /// at idle and how late ticks fire.
    Schedules(crate::bench::schedules::SchedulesArgs),
}

#[derive(Debug, Args)]
pub struct WorkspaceArg {
    /// The workspace.
    #[arg(long, short = 'w')]
    pub workspace: String,
}

#[derive(Debug, Args)]
pub struct RunRef {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    #[arg(long)]
    pub run_id: String,
}

#[derive(Debug, Args)]
pub struct StartRunArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    /// Experiment name; created on first use.
    #[arg(long, short = 'e')]
    pub experiment: String,
    /// Run id (default: generated).
    #[arg(long)]
    pub run_id: Option<String>,
    #[arg(long)]
    pub run_type: Option<String>,
    /// Tags as KEY=VALUE.
    #[arg(long, num_args = 1..)]
    pub tags: Vec<String>,
    /// Properties as KEY=VALUE.
    #[arg(long, num_args = 1..)]
    pub properties: Vec<String>,
    /// Parent run id, for a child run.
    #[arg(long)]
    pub parent: Option<String>,
    /// Initial status: NotStarted, Queued or Running.
    #[arg(long, default_value = "Running")]
    pub status: String,
}

#[derive(Debug, Args)]
pub struct EndRunArgs {
    #[command(flatten)]
    pub run: RunRef,
    /// Why the run failed or was cancelled.
    #[arg(long)]
    pub error: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Start a run (status Running unless --status says otherwise).
    Start(StartRunArgs),
    /// Complete a run: raises RunCompleted.
    Complete(EndRunArgs),
    /// Fail a run: raises RunStatusChanged.
    Fail(EndRunArgs),
    /// Cancel a run: raises no event.
    Cancel(EndRunArgs),
    Show(RunRef),
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        /// Only this experiment's runs.
        #[arg(long, short = 'e')]
        experiment: Option<String>,
    },
    /// Log one metric value.
    LogMetric {
        #[command(flatten)]
        run: RunRef,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, allow_negative_numbers = true)]
        value: f64,
        #[arg(long, default_value_t = 0)]
        step: u64,
    },
    /// List a run's metrics.
    Metrics(RunRef),
    /// Print a pipeline step's output (stdout, or stderr with --stderr).
    Logs {
        #[command(flatten)]
        run: RunRef,
        /// The step (by name); not needed for a step's own run id or a one-step pipeline.
        #[arg(long)]
        step: Option<String>,
        #[arg(long)]
        stderr: bool,
        /// Keep printing what the step writes until it ends.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Debug, Args)]
pub struct PipelineRef {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    /// The pipeline's id (from `mlgrid pipeline publish` or `list`).
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    /// The pipeline to run.
    #[arg(long, required_unless_present = "endpoint")]
    pub id: Option<String>,
    /// Or a pipeline endpoint, which runs its default pipeline.
    #[arg(long, conflicts_with = "id")]
    pub endpoint: Option<String>,
    /// The experiment the run belongs to (created on first use).
    #[arg(long, short = 'e')]
    pub experiment_name: String,
    /// A parameter's value as NAME=VALUE (repeat for several).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// A data path parameter's file as NAME=DATASTORE:PATH (repeat for several).
    #[arg(long = "data-path")]
    pub data_paths: Vec<String>,
    /// Let the steps that do not depend on a failed step go on.
    #[arg(long)]
    pub continue_on_step_failure: bool,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Publish a pipeline from its YAML file; prints its id, version and submit endpoint.
    Publish {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Its version [default: the next integer for its name].
        #[arg(long)]
        version: Option<String>,
    },
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        /// Only the versions of this name.
        #[arg(long, short = 'n')]
        name: Option<String>,
    },
    Show(PipelineRef),
    /// Refuse submissions to the pipeline until it is enabled again.
    Disable(PipelineRef),
    Enable(PipelineRef),
    /// Start a run of a pipeline (or of an endpoint's default pipeline).
    Submit(SubmitArgs),
    /// Show a pipeline run with its steps.
    ShowRun(RunRef),
}

#[derive(Debug, Subcommand)]
pub enum PipelineEndpointCommand {
    /// Create an endpoint whose submissions run PIPELINE_ID until the default is switched.
    Create {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long)]
        pipeline_id: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    Show {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
    },
    List(WorkspaceArg),
    /// Make another pipeline the endpoint's default.
    SetDefault {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long)]
        pipeline_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatastoreType {
    Local,
    Azureblob,
    S3,
    Gcs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatastoreCredentials {
    /// The server's own environment (AZURE_STORAGE_*, AWS_*, GOOGLE_* variables).
    Environment,
    /// Read from this command's environment and stored sealed by the server:
    /// MLGRID_DATASTORE_ACCOUNT_KEY (azureblob), MLGRID_DATASTORE_SECRET_ACCESS_KEY
    /// with --access-key-id (s3), MLGRID_DATASTORE_SERVICE_ACCOUNT_KEY (gcs).
    Stored,
}

#[derive(Debug, Args)]
pub struct DatastoreArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    #[arg(long, short = 'n')]
    pub name: String,
    #[arg(long = "type", value_enum)]
    pub kind: DatastoreType,
    /// local: the folder's absolute path on the server.
    #[arg(long)]
    pub path: Option<String>,
    /// azureblob: the storage account.
    #[arg(long)]
    pub account: Option<String>,
    /// azureblob: the container.
    #[arg(long)]
    pub container: Option<String>,
    /// s3, gcs: the bucket.
    #[arg(long)]
    pub bucket: Option<String>,
    /// s3: the region (default us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// s3, azureblob: the service's URL when not the cloud's own.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The folder inside the bucket or container that is the datastore's root.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Where the server gets credentials (remote kinds); default: environment. Secrets
    /// are never taken from the command line, which `ps` shows.
    #[arg(long, value_enum)]
    pub credentials: Option<DatastoreCredentials>,
    /// s3 with stored credentials: the access key id (its secret comes from
    /// MLGRID_DATASTORE_SECRET_ACCESS_KEY).
    #[arg(long)]
    pub access_key_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Register a datastore; the server reaches it first, and stores nothing if it cannot.
    Create(Box<DatastoreArgs>),
    Show {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
    },
    List(WorkspaceArg),
    /// Delete a datastore; refused while enabled pipelines read it, or watches watch it.
    Delete {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
    },
    /// Watches publishing a `Microsoft.Storage.BlobCreated` event into a topic for each
    /// file added or changed in a folder of the datastore.
    #[command(subcommand)]
    Watch(WatchCommand),
}

/// One watch of a datastore.
#[derive(Debug, Args)]
pub struct WatchRef {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    #[arg(long)]
    pub datastore: String,
    #[arg(long, short = 'n')]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum WatchCommand {
    /// Watch a folder; files already there publish nothing.
    Create {
        #[command(flatten)]
        watch: WatchRef,
        /// The custom topic the events go to.
        #[arg(long)]
        topic: String,
        /// The folder, relative to the datastore's root (default: the root).
        #[arg(long)]
        path: Option<String>,
        /// Files in subfolders count too.
        #[arg(long)]
        recursive: bool,
        /// Minutes between polls (default 5, at least 1).
        #[arg(long)]
        polling_interval: Option<u32>,
        /// The same in seconds, for tests (a server refuses less than a minute unless
        /// started with `--min-polling-seconds`).
        #[arg(long, hide = true)]
        polling_interval_seconds: Option<u32>,
    },
    Show(WatchRef),
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long)]
        datastore: String,
    },
    Delete(WatchRef),
}

#[derive(Debug, Args)]
pub struct ScheduleRef {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    #[arg(long, short = 'n')]
    pub name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Frequency {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MisfireArg {
    None,
    Latest,
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverlapArg {
    Skip,
    Queue,
    Allow,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleStatusArg {
    Active,
    Disabled,
}

/// What a schedule is, as `create` takes it whole and `update` in part.
#[derive(Debug, Args)]
pub struct ScheduleFields {
    /// The published pipeline each tick runs.
    #[arg(long)]
    pub pipeline_id: Option<String>,
    /// The experiment its runs belong to.
    #[arg(long, short = 'e')]
    pub experiment_name: Option<String>,
    #[arg(long, value_enum, ignore_case = true)]
    pub frequency: Option<Frequency>,
    /// Every this many of --frequency.
    #[arg(long)]
    pub interval: Option<u32>,
    /// The anchor of its fire times (RFC 3339) [default: when it is created].
    #[arg(long)]
    pub start_time: Option<String>,
    /// The last instant that may fire (RFC 3339).
    #[arg(long)]
    pub end_time: Option<String>,
    /// An IANA time zone for Day, Week and Month recurrences [default: UTC].
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Hours of the day (Day and Week), e.g. --hours 9 17.
    #[arg(long, num_args = 1..)]
    pub hours: Vec<u8>,
    /// Minutes of the hour (Day and Week).
    #[arg(long, num_args = 1..)]
    pub minutes: Vec<u8>,
    /// Week days (Week), e.g. --week-days Monday Thursday.
    #[arg(long, num_args = 1..)]
    pub week_days: Vec<String>,
    #[arg(long, value_enum, ignore_case = true)]
    pub status: Option<ScheduleStatusArg>,
    /// Let the steps that do not depend on a failed step go on (`false` to stop).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub continue_on_step_failure: Option<bool>,
    /// A parameter's value as NAME=VALUE (repeat for several).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Ticks missed while the server was down [default: latest].
    #[arg(long, value_enum, ignore_case = true)]
    pub misfire: Option<MisfireArg>,
    /// A tick while --max-concurrent runs are going [default: skip].
    #[arg(long, value_enum, ignore_case = true)]
    pub overlap: Option<OverlapArg>,
    /// Runs of the schedule that may go at once [default: 1].
    #[arg(long)]
    pub max_concurrent: Option<u32>,
    /// A change schedule: the datastore whose folder it watches (instead of
    /// --frequency).
    #[arg(long)]
    pub datastore: Option<String>,
    /// The folder of --datastore it watches (`.` for the root): a file added or changed
    /// in it starts a run.
    #[arg(long)]
    pub path_on_datastore: Option<String>,
    /// Minutes between two listings of the folder [default: 5].
    #[arg(long)]
    pub polling_interval: Option<u32>,
    /// The same in seconds, for tests (a server refuses less than a minute unless
    /// started with `--min-polling-seconds`).
    #[arg(long, hide = true)]
    pub polling_interval_seconds: Option<u32>,
    /// The pipeline's data-path parameter that gets the changed file.
    #[arg(long)]
    pub data_path_parameter_name: Option<String>,
    /// Files in subfolders of --path-on-datastore count too (`--recursive false` to stop).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub recursive: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a time schedule (--pipeline-id, --experiment-name, --frequency and
    /// --interval) or a change schedule (--pipeline-id, --experiment-name, --datastore and
    /// --path-on-datastore).
    Create {
        #[command(flatten)]
        schedule: ScheduleRef,
        #[command(flatten)]
        fields: ScheduleFields,
    },
    /// Active schedules (with --all, disabled ones too).
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        pipeline_id: Option<String>,
    },
    /// A schedule with its next fire time and last run.
    Show(ScheduleRef),
    /// Change what is given; a recurrence is replaced whole (--frequency and --interval).
    Update {
        #[command(flatten)]
        schedule: ScheduleRef,
        #[command(flatten)]
        fields: ScheduleFields,
    },
    Enable(ScheduleRef),
    Disable(ScheduleRef),
    Delete(ScheduleRef),
    /// The coming fire times, in UTC and on the schedule's zone's clock (a change
    /// schedule says what it watches instead).
    Next {
        #[command(flatten)]
        schedule: ScheduleRef,
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// The ticks the schedule fired, newest first, with their runs.
    Runs(ScheduleRef),
}

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    List(WorkspaceArg),
}

#[derive(Debug, Args)]
pub struct ModelRefArgs {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    #[arg(long, short = 'n')]
    pub name: String,
    #[arg(long, short = 'v')]
    pub version: u64,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Register the next version of a model: raises ModelRegistered.
    Register {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
        /// Where the model's files are.
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
        #[arg(long, num_args = 1..)]
        properties: Vec<String>,
    },
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long)]
        include_archived: bool,
    },
    /// Show a version, or the latest that is not archived.
    Show {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'v')]
        version: Option<u64>,
    },
    /// Set or remove tags and properties, or change the description (no event).
    Update {
        #[command(flatten)]
        model: ModelRefArgs,
        #[arg(long)]
        description: Option<String>,
        /// Tags to set, as KEY=VALUE.
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
        /// Tag keys to remove.
        #[arg(long, num_args = 1..)]
        remove_tags: Vec<String>,
        /// Properties to set, as KEY=VALUE.
        #[arg(long, num_args = 1..)]
        properties: Vec<String>,
    },
    /// Archive a version: no longer the latest, no longer deployable.
    Archive(ModelRefArgs),
    /// Deploy model versions to a service: raises ModelDeployed.
    Deploy {
        #[command(flatten)]
        workspace: WorkspaceArg,
        /// Service name.
        #[arg(long, short = 'n')]
        name: String,
        /// Model version as NAME:VERSION; repeat for several.
        #[arg(long = "model", short = 'm', required = true)]
        models: Vec<String>,
        #[arg(long, value_parser = ["ACI", "AKS", "Local"], ignore_case = true)]
        compute_type: String,
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
        #[arg(long, num_args = 1..)]
        properties: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct NamedInWorkspace {
    #[command(flatten)]
    pub workspace: WorkspaceArg,
    #[arg(long, short = 'n')]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    List(WorkspaceArg),
    Show(NamedInWorkspace),
    Delete(NamedInWorkspace),
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Register the next version of a dataset.
    Register {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
        /// The dataset's file or folder.
        #[arg(long)]
        path: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, num_args = 1..)]
        tags: Vec<String>,
    },
    List {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: Option<String>,
    },
    Show {
        #[command(flatten)]
        workspace: WorkspaceArg,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'v')]
        version: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Create a principal; prints its API key once.
    Create(NameArg),
    List,
    /// Manage a principal's API keys.
    #[command(subcommand)]
    Key(PrincipalKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PrincipalKeyCommand {
    /// Issue another API key; printed once.
    Create(NameArg),
    /// Revoke every API key of the principal, at once.
    Revoke(NameArg),
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    #[command(subcommand)]
    Assignment(RoleAssignmentCommand),
}

/// A workspace or a topic; neither means every workspace and topic.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct RoleScope {
    #[arg(long)]
    pub workspace: Option<String>,
    #[arg(long)]
    pub topic: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RoleAssignmentCommand {
    /// Grant a role.
    Create {
        /// The principal's name.
        #[arg(long)]
        assignee: String,
        #[arg(long, value_parser = ["Owner", "Contributor", "Reader"], ignore_case = true)]
        role: String,
        #[command(flatten)]
        scope: RoleScope,
    },
    List {
        #[arg(long)]
        assignee: Option<String>,
        #[command(flatten)]
        scope: RoleScope,
    },
    /// Remove the matching role assignments.
    Delete {
        #[arg(long)]
        assignee: String,
        #[arg(long, value_parser = ["Owner", "Contributor", "Reader"], ignore_case = true)]
        role: Option<String>,
        #[command(flatten)]
        scope: RoleScope,
    },
}

/// The source of a subscription: a workspace, a topic, or a resource id naming either.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SubscriptionSource {
    #[arg(long)]
    pub workspace: Option<String>,
    #[arg(long)]
    pub topic: Option<String>,
    /// A workspace's or topic's resource path (`/subscriptions/.../workspaces/W`).
    #[arg(long)]
    pub source_resource_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubscriptionRef {
    #[command(flatten)]
    pub source: SubscriptionSource,
    #[arg(long, short = 'n')]
    pub name: String,
}

/// The settings of `create` and `update`; on `update` only the given ones change.
#[derive(Debug, Args)]
pub struct SubscriptionSettings {
    /// The receiver's URL; with --endpoint-type pipeline, the id of a published pipeline
    /// or the name of a pipeline endpoint (required on create).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// `webhook` (default), or `pipeline`: each event submits a pipeline run.
    #[arg(long, value_parser = ["webhook", "pipeline"], ignore_case = true)]
    pub endpoint_type: Option<String>,
    /// The experiment a pipeline trigger's runs belong to.
    #[arg(long)]
    pub pipeline_experiment_name: Option<String>,
    /// For a topic's pipeline trigger: the workspace whose pipeline runs.
    #[arg(long)]
    pub pipeline_workspace: Option<String>,
    /// A pipeline parameter's value as NAME=TEMPLATE, the template reading the event:
    /// `model_name='${data.ModelName}'` (repeat for several; replaces them all on update).
    #[arg(long)]
    pub pipeline_parameter: Vec<String>,
    /// Event types to deliver (all when absent).
    #[arg(long, num_args = 1..)]
    pub included_event_types: Option<Vec<String>>,
    #[arg(long)]
    pub subject_begins_with: Option<String>,
    #[arg(long)]
    pub subject_ends_with: Option<String>,
    /// Compare subjects case-sensitively.
    #[arg(long)]
    pub subject_case_sensitive: bool,
    /// KEY OPERATOR VALUE...: repeat for several filters; ranges as LO,HI.
    #[arg(long, num_args = 2.., action = clap::ArgAction::Append, value_names = ["KEY", "OPERATOR"])]
    pub advanced_filter: Vec<String>,
    /// The occurrences of --advanced-filter, one list each (filled from the parsed matches:
    /// clap's derive flattens them).
    #[arg(skip)]
    pub advanced_filters: Vec<Vec<String>>,
    /// Let advanced filters match any element of array values.
    #[arg(long)]
    pub enable_advanced_filtering_on_arrays: bool,
    #[arg(long, value_parser = ["EventGridSchema", "CloudEventSchemaV1_0"], ignore_case = true)]
    pub event_delivery_schema: Option<String>,
    /// 1-30 (default 30).
    #[arg(long)]
    pub max_delivery_attempts: Option<u32>,
    /// Minutes an event may wait for delivery, 1-1440 (default 1440).
    #[arg(long)]
    pub event_ttl: Option<u32>,
    /// 1-5000 events per delivery (default 1).
    #[arg(long)]
    pub max_events_per_batch: Option<u32>,
    /// 1-1024 KB per delivery (default 64).
    #[arg(long)]
    pub preferred_batch_size_in_kilobytes: Option<u32>,
    #[arg(long, num_args = 1..)]
    pub labels: Option<Vec<String>>,
    /// When the subscription expires and is removed (RFC 3339).
    #[arg(long)]
    pub expiration_date: Option<String>,
    /// Also write dead-lettered events, as JSON arrays, to this folder of the datastore.
    #[arg(long)]
    pub deadletter_folder: Option<String>,
    #[arg(long, default_value = "workspaceblobstore", requires = "deadletter_folder")]
    pub deadletter_datastore: String,
    /// Skip the endpoint validation handshake (for receivers you trust).
    #[arg(long)]
    pub skip_validation: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventSubscriptionCommand {
    Create {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[command(flatten)]
        settings: SubscriptionSettings,
    },
    /// Change the given settings of a subscription.
    Update {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[command(flatten)]
        settings: SubscriptionSettings,
    },
    Show {
        #[command(flatten)]
        subscription: SubscriptionRef,
        /// Show the whole endpoint URL, query included (the server shows readers only
        /// `endpointBaseUrl`, since the query often holds a secret). Takes Contributor.
        #[arg(long)]
        include_full_endpoint_url: bool,
    },
    List {
        #[command(flatten)]
        source: SubscriptionSource,
    },
    Delete(SubscriptionRef),
    /// The delivery log: the latest attempts, newest first.
    Attempts {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The secret that signs deliveries (Standard Webhooks), or a new one with --rotate.
    SigningSecret {
        #[command(flatten)]
        subscription: SubscriptionRef,
        /// Replace the secret; the old one keeps signing for --grace-minutes.
        #[arg(long)]
        rotate: bool,
        #[arg(long, default_value_t = 60, requires = "rotate")]
        grace_minutes: u32,
    },
    /// Dead-lettered events: list, redeliver, purge.
    #[command(subcommand)]
    Deadletter(DeadLetterCommand),
    /// The events a subscription matched.
    Events {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

impl Cli {
    /// Parses the command line, keeping each `--advanced-filter` occurrence apart.
    pub fn parse_grouped() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let Command::EventSubscription(command) = &mut cli.command
            && let EventSubscriptionCommand::Create { settings, .. } | EventSubscriptionCommand::Update { settings, .. } =
                command.as_mut()
            && let Some((_, sub)) = matches.subcommand()
            && let Some((_, action)) = sub.subcommand()
            && let Ok(Some(occurrences)) = action.try_get_occurrences::<String>("advanced_filter")
        {
            settings.advanced_filters = occurrences.map(|values| values.cloned().collect()).collect();
        }
        cli
    }
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    List {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One dead-lettered event.
    Show {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[arg(long)]
        sequence: u64,
    },
    /// Deliver dead-lettered events again: those matching every option given, or all.
    Redeliver {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[command(flatten)]
        selection: DeadLetterSelection,
    },
    /// Delete dead-lettered events: those matching every option given, or all.
    Purge {
        #[command(flatten)]
        subscription: SubscriptionRef,
        #[command(flatten)]
        selection: DeadLetterSelection,
    },
}

/// Which dead letters a redeliver or purge is about.
#[derive(Debug, Args)]
pub struct DeadLetterSelection {
    #[arg(long = "sequence", num_args = 1..)]
    pub sequences: Option<Vec<u64>>,
    /// e.g. MaxDeliveryAttemptsExceeded, TimeToLiveExceeded, NonRetriableStatus.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub event_type: Option<String>,
    #[arg(long)]
    pub status_code: Option<u16>,
}
