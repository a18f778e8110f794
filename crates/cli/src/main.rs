//! `mlgrid`: the server, the client commands and the benchmarks in one binary.

mod args;
mod bench;
mod client;
mod commands;
mod demo;
mod output;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use args::{AdminCommand, BenchCommand, Cli, Command, LogFormat};
use client::Client;

fn init_logging(default_level: &str, format: LogFormat) {
    // PostgreSQL's notices ("relation ... already exists, skipping" at every start) are
    // not news.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx::postgres::notice=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output;
    let value = match cli.command {
        Command::Serve(args) => {
            init_logging("info", args.log_format);
            return commands::serve::run(args, &cli.global.data_dir).await;
        }
        Command::Demo => {
            init_logging("warn", LogFormat::Text);
            return demo::run().await;
        }
        Command::Migrate(args) => {
            init_logging("warn", LogFormat::Text);
            return commands::migrate::run(args).await;
        }
        Command::Bench(BenchCommand::Publish(args)) => {
            init_logging("warn", LogFormat::Text);
            return bench::publish::run(args, &cli.global).await;
        }
        Command::Bench(BenchCommand::Filter(args)) => {
            init_logging("warn", LogFormat::Text);
            return bench::filter::run(args);
        }
        Command::Bench(BenchCommand::Deliver(args)) => {
            init_logging("warn", LogFormat::Text);
            return bench::deliver::run(args, &cli.global).await;
        }
        Command::Bench(BenchCommand::Pipeline(args)) => {
            init_logging("warn", LogFormat::Text);
            return bench::pipeline::run(args, &cli.global).await;
        }
        Command::Bench(BenchCommand::Schedules(args)) => {
            init_logging("warn", LogFormat::Text);
            return bench::schedules::run(args, &cli.global).await;
        }
        Command::Bench(BenchCommand::Soak(args)) => {
            init_logging("warn", LogFormat::Text);
            return bench::soak::run(args, &cli.global).await;
        }
        Command::Admin(AdminCommand::Recover(args)) => {
            init_logging("warn", LogFormat::Text);
            commands::admin::recover(args, &cli.global.data_dir).await?
        }
        Command::Events(command) => {
            init_logging("warn", LogFormat::Text);
            return commands::events::run(&Client::new(&cli.global)?, command, format).await;
        }
        Command::Prune(args) => commands::sources::prune(&Client::new(&cli.global)?, args.dry_run).await?,
        Command::Workspace(command) => commands::sources::workspace(&Client::new(&cli.global)?, command).await?,
        Command::Topic(command) => commands::sources::topic(&Client::new(&cli.global)?, command).await?,
        Command::EventSubscription(command) => {
            commands::subscriptions::run(&Client::new(&cli.global)?, *command).await?
        }
        Command::Principal(command) => commands::access::principal(&Client::new(&cli.global)?, command).await?,
        Command::Role(command) => commands::access::role(&Client::new(&cli.global)?, command).await?,
        Command::Run(command) => commands::lifecycle::run(&Client::new(&cli.global)?, command).await?,
        Command::Pipeline(command) => commands::pipelines::pipeline(&Client::new(&cli.global)?, command).await?,
        Command::PipelineEndpoint(command) => {
            commands::pipelines::endpoint(&Client::new(&cli.global)?, command).await?
        }
        Command::Schedule(command) => commands::schedules::schedule(&Client::new(&cli.global)?, command).await?,
        Command::Experiment(command) => commands::lifecycle::experiment(&Client::new(&cli.global)?, command).await?,
        Command::Model(command) => commands::lifecycle::model(&Client::new(&cli.global)?, command).await?,
        Command::Deployment(command) => commands::lifecycle::deployment(&Client::new(&cli.global)?, command).await?,
        Command::Dataset(command) => commands::lifecycle::dataset(&Client::new(&cli.global)?, command).await?,
        Command::Datastore(command) => commands::datastores::run(&Client::new(&cli.global)?, command).await?,
    };
    if !value.is_null() {
        output::print(&value, format);
    }
    Ok(())
}

/// mimalloc instead of the system allocator: deliveries allocate and free many small
/// buffers across threads, where glibc's allocator spends much of its time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_grouped();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
