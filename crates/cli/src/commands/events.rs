//! `mlgrid events list|tail`.

use std::io::Write;

use anyhow::Context;
use serde_json::Value;

use crate::args::{EventsCommand, Output, SourceSelector};
use crate::client::Client;
use crate::output;

/// How long one tail request waits on the server for new events.
const TAIL_WAIT_SECONDS: u64 = 30;
const TAIL_PAGE: u32 = 1000;

fn log_path(source: &SourceSelector) -> String {
    match (&source.workspace, &source.topic) {
        (Some(ws), _) => format!("/v1/workspaces/{ws}/events"),
        (None, Some(topic)) => format!("/v1/topics/{topic}/events"),
        (None, None) => unreachable!("clap requires --workspace or --topic"),
    }
}

/// Says on stderr when events asked for were pruned, so a gap is never silent.
fn note_pruned(page: &Value, after: u64) {
    if let Some(first) = page["firstAvailableSequence"].as_u64() {
        eprintln!(
            "note: events {}..{} were pruned by the retention; the log starts at {first}",
            after + 1,
            first - 1
        );
    }
}

/// Rows for `--output table`: the envelope fields people scan for.
fn summary(record: &Value) -> Value {
    let event = &record["event"];
    serde_json::json!({
        "sequence": record["sequence"],
        "eventType": event.get("eventType").or_else(|| event.get("type")),
        "subject": event["subject"],
        "id": event["id"],
        "publishedAt": record["publishedAt"],
    })
}

pub async fn run(client: &Client, command: EventsCommand, format: Output) -> anyhow::Result<()> {
    match command {
        EventsCommand::List { source, after, limit } => {
            let page = client
                .get(&format!("{}?after={after}&limit={limit}", log_path(&source)))
                .await?;
            note_pruned(&page, after);
            let events = page["events"].clone();
            match format {
                Output::Json => output::print(&events, format),
                Output::Table => {
                    let rows: Vec<Value> = events.as_array().into_iter().flatten().map(summary).collect();
                    output::print(&Value::Array(rows), format);
                }
            }
            Ok(())
        }
        EventsCommand::Tail { source, after } => {
            let path = log_path(&source);
            let mut after = match after {
                Some(after) => after,
                None => {
                    // From now on: start after the newest event.
                    let resource = client.get(path.trim_end_matches("/events")).await?;
                    resource["lastSequence"]
                        .as_u64()
                        .context("the server did not report lastSequence")?
                }
            };
            let stdout = std::io::stdout();
            loop {
                let page = client
                    .get(&format!(
                        "{path}?after={after}&limit={TAIL_PAGE}&waitSeconds={TAIL_WAIT_SECONDS}"
                    ))
                    .await?;
                note_pruned(&page, after);
                let mut out = stdout.lock();
                for record in page["events"].as_array().into_iter().flatten() {
                    let line = match format {
                        Output::Json => record.clone(),
                        Output::Table => summary(record),
                    };
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
                after = page["lastSequence"]
                    .as_u64()
                    .context("the server did not report lastSequence")?;
            }
        }
    }
}
