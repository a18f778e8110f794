//! `mlgrid workspace ...` and `mlgrid topic ...`.

use serde_json::{Value, json};

use anyhow::{Context, bail};
use mlgrid_core::retention::RetentionSpan;

use crate::args::{CreateSourceArgs, SourceCommand, TopicCommand, TopicKeyCommand, UpdateSourceArgs};
use crate::client::{Client, list_value};

fn create_body(args: &CreateSourceArgs) -> Value {
    let mut body = json!({"name": args.name});
    if let Some(s) = &args.subscription_id {
        body["subscriptionId"] = json!(s);
    }
    if let Some(rg) = &args.resource_group {
        body["resourceGroup"] = json!(rg);
    }
    if args.retention.is_some() || args.retention_bytes.is_some() {
        body["retention"] = retention_body(args.retention, args.retention_bytes);
    }
    body
}

fn retention_body(time: Option<RetentionSpan>, max_bytes: Option<u64>) -> Value {
    let mut body = json!({});
    if let Some(time) = time {
        body["time"] = json!(time.to_string());
    }
    if let Some(max_bytes) = max_bytes {
        body["maxBytes"] = json!(max_bytes);
    }
    body
}

/// Changes a source's retention: the API replaces it whole, so what a flag leaves out is
/// read back from the source first.
async fn update(client: &Client, collection: &str, args: UpdateSourceArgs) -> anyhow::Result<Value> {
    if args.retention.is_none() && args.retention_bytes.is_none() {
        bail!("nothing to change: give --retention (30m, 12h, 7d or default) or --retention-bytes (a number or none)");
    }
    let path = format!("/v1/{collection}/{}", args.name);
    let current = client.get(&path).await?;
    let retention = &current["retention"];
    let mut time = match retention["timeIsServerDefault"].as_bool() {
        Some(false) => Some(
            retention["time"]
                .as_str()
                .context("the server did not report the retention time")?
                .parse::<RetentionSpan>()?,
        ),
        _ => None,
    };
    let mut max_bytes = retention["maxBytes"].as_u64();
    match args.retention.as_deref() {
        Some("default") => time = None,
        Some(span) => time = Some(span.parse()?),
        None => {}
    }
    match args.retention_bytes.as_deref() {
        Some("none") => max_bytes = None,
        Some(bytes) => {
            max_bytes = Some(bytes.parse().with_context(|| {
                format!(
                    "--retention-bytes `{bytes}` is not a number of bytes: write e.g. 1073741824, or none for no limit"
                )
            })?)
        }
        None => {}
    }
    let body = json!({"retention": retention_body(time, max_bytes)});
    client.call(reqwest::Method::PATCH, &path, Some(&body)).await
}

/// Runs the create/list/show/delete commands shared by workspaces and topics, under
/// `/v1/{collection}`.
async fn source_command(client: &Client, collection: &str, command: SourceCommand) -> anyhow::Result<Value> {
    match command {
        SourceCommand::Create(args) => client.post(&format!("/v1/{collection}"), &create_body(&args)).await,
        SourceCommand::List => list_value(client.get(&format!("/v1/{collection}")).await?),
        SourceCommand::Show(args) => client.get(&format!("/v1/{collection}/{}", args.name)).await,
        SourceCommand::Update(args) => update(client, collection, args).await,
        SourceCommand::Delete(args) => client.delete(&format!("/v1/{collection}/{}", args.name)).await,
    }
}

pub async fn workspace(client: &Client, command: SourceCommand) -> anyhow::Result<Value> {
    source_command(client, "workspaces", command).await
}

pub async fn topic(client: &Client, command: TopicCommand) -> anyhow::Result<Value> {
    let shared = match command {
        TopicCommand::Create(args) => SourceCommand::Create(args),
        TopicCommand::List => SourceCommand::List,
        TopicCommand::Show(args) => SourceCommand::Show(args),
        TopicCommand::Update(args) => SourceCommand::Update(args),
        TopicCommand::Delete(args) => SourceCommand::Delete(args),
        TopicCommand::Key(TopicKeyCommand::List(args)) => {
            return client
                .post(&format!("/v1/topics/{}/listKeys", args.name), &json!({}))
                .await;
        }
        TopicCommand::Key(TopicKeyCommand::Regenerate(args)) => {
            let body = json!({"keyName": args.key_name});
            return client
                .post(&format!("/v1/topics/{}/regenerateKey", args.name), &body)
                .await;
        }
    };
    source_command(client, "topics", shared).await
}

/// `mlgrid prune [--dry-run]`: one pass now, or what it would remove.
pub async fn prune(client: &Client, dry_run: bool) -> anyhow::Result<Value> {
    let report = client.post(&format!("/v1/prune?dryRun={dry_run}"), &json!({})).await?;
    list_value(report)
}
