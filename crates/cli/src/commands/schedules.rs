//! `mlgrid schedule ...`: time and change schedules of published pipelines.

use anyhow::bail;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::pipelines::pairs;
use crate::args::{Frequency, MisfireArg, OverlapArg, ScheduleCommand, ScheduleFields, ScheduleRef, ScheduleStatusArg};
use crate::client::{Client, list_value};

fn uri(schedule: &ScheduleRef) -> String {
    format!(
        "/v1/workspaces/{}/schedules/{}",
        schedule.workspace.workspace, schedule.name
    )
}

pub async fn schedule(client: &Client, command: ScheduleCommand) -> anyhow::Result<Value> {
    match command {
        ScheduleCommand::Create { schedule, fields } => {
            let mut missing = Vec::new();
            // The server refuses a mix of time and change flags, naming the rule.
            let change = fields.datastore.is_some() || fields.path_on_datastore.is_some();
            let time = fields.frequency.is_some() || fields.interval.is_some() || !change;
            for (flag, given) in [
                ("--pipeline-id", fields.pipeline_id.is_some()),
                ("--experiment-name", fields.experiment_name.is_some()),
                ("--frequency", fields.frequency.is_some() || !time),
                ("--interval", fields.interval.is_some() || !time),
                ("--datastore", fields.datastore.is_some() || !change),
                ("--path-on-datastore", fields.path_on_datastore.is_some() || !change),
            ] {
                if !given {
                    missing.push(flag);
                }
            }
            if !missing.is_empty() {
                bail!(
                    "a new schedule needs {} (a time schedule takes --frequency and --interval, a change schedule \
                     --datastore and --path-on-datastore)",
                    missing.join(", ")
                );
            }
            let body = body(&fields, Map::new())?;
            // PUT also replaces a schedule of the name; `create` only creates.
            if client.get(&uri(&schedule)).await.is_ok() {
                bail!(
                    "schedule `{}` already exists in workspace `{}`: change it with `mlgrid schedule update`, or \
                     choose another name",
                    schedule.name,
                    schedule.workspace.workspace
                );
            }
            client.call(Method::PUT, &uri(&schedule), Some(&body)).await
        }
        ScheduleCommand::List {
            workspace,
            all,
            pipeline_id,
        } => {
            let mut query = vec![];
            if all {
                query.push("all=true".to_owned());
            }
            if let Some(id) = pipeline_id {
                query.push(format!("pipelineId={id}"));
            }
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            list_value(
                client
                    .get(&format!("/v1/workspaces/{}/schedules{query}", workspace.workspace))
                    .await?,
            )
        }
        ScheduleCommand::Show(schedule) => client.get(&uri(&schedule)).await,
        ScheduleCommand::Update { schedule, fields } => {
            let current = client.get(&uri(&schedule)).await?;
            let recurrence = current["recurrence"].as_object().cloned().unwrap_or_default();
            let body = body(&fields, recurrence)?;
            client.call(Method::PATCH, &uri(&schedule), Some(&body)).await
        }
        ScheduleCommand::Enable(schedule) => client.post(&format!("{}/enable", uri(&schedule)), &json!({})).await,
        ScheduleCommand::Disable(schedule) => client.post(&format!("{}/disable", uri(&schedule)), &json!({})).await,
        ScheduleCommand::Delete(schedule) => client.delete(&uri(&schedule)).await,
        ScheduleCommand::Next { schedule, count } => {
            let current = client.get(&uri(&schedule)).await?;
            if current["kind"] == "change" {
                return Ok(json!({
                    "name": current["name"],
                    "kind": "change",
                    "firesOn": format!(
                        "each file added or changed in `{}` of datastore `{}`{}, found by a poll every {} s",
                        current["pathOnDatastore"].as_str().unwrap_or_default(),
                        current["datastore"].as_str().unwrap_or_default(),
                        if current["recursive"] == true { " or its subfolders" } else { "" },
                        current["pollingIntervalSeconds"],
                    ),
                    "lastPollTime": current["lastPollTime"],
                    "nextPollTime": current["nextPollTime"],
                }));
            }
            let next = client.get(&format!("{}/next?count={count}", uri(&schedule))).await?;
            let zone = next["timeZone"].clone();
            // One row per fire time, each naming the zone its local time is in.
            let mut times = list_value(next)?;
            for time in times.as_array_mut().into_iter().flatten() {
                time["timeZone"] = zone.clone();
            }
            Ok(times)
        }
        ScheduleCommand::Runs(schedule) => list_value(client.get(&format!("{}/runs", uri(&schedule))).await?),
    }
}

/// The request body of the fields given; the recurrence's fields go over `recurrence`
/// (the current one, for an update), and it is sent when any of them was given.
fn body(fields: &ScheduleFields, mut recurrence: Map<String, Value>) -> anyhow::Result<Value> {
    let mut body = Map::new();
    let mut set = |name: &str, value: Value| {
        body.insert(name.to_owned(), value);
    };
    if let Some(id) = &fields.pipeline_id {
        set("pipelineId", json!(id));
    }
    if let Some(name) = &fields.experiment_name {
        set("experimentName", json!(name));
    }
    if let Some(status) = fields.status {
        set(
            "status",
            json!(match status {
                ScheduleStatusArg::Active => "Active",
                ScheduleStatusArg::Disabled => "Disabled",
            }),
        );
    }
    if let Some(continue_on_step_failure) = fields.continue_on_step_failure {
        set("continueOnStepFailure", json!(continue_on_step_failure));
    }
    if !fields.params.is_empty() {
        let params: Map<String, Value> = pairs("--param", &fields.params)?
            .into_iter()
            .map(|(name, value)| (name.to_owned(), json!(value)))
            .collect();
        set("parameterAssignments", Value::Object(params));
    }
    if let Some(misfire) = fields.misfire {
        set(
            "misfirePolicy",
            json!(match misfire {
                MisfireArg::None => "none",
                MisfireArg::Latest => "latest",
                MisfireArg::All => "all",
            }),
        );
    }
    if let Some(overlap) = fields.overlap {
        set(
            "overlapPolicy",
            json!(match overlap {
                OverlapArg::Skip => "skip",
                OverlapArg::Queue => "queue",
                OverlapArg::Allow => "allow",
            }),
        );
    }
    if let Some(n) = fields.max_concurrent {
        set("maxConcurrent", json!(n));
    }
    if let Some(datastore) = &fields.datastore {
        set("datastore", json!(datastore));
    }
    if let Some(path) = &fields.path_on_datastore {
        set("pathOnDatastore", json!(path));
    }
    if let Some(minutes) = fields.polling_interval {
        set("pollingInterval", json!(minutes));
    }
    if let Some(seconds) = fields.polling_interval_seconds {
        set("pollingIntervalSeconds", json!(seconds));
    }
    if let Some(name) = &fields.data_path_parameter_name {
        set("dataPathParameterName", json!(name));
    }
    if let Some(recursive) = fields.recursive {
        set("recursive", json!(recursive));
    }
    let mut changed = false;
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            recurrence.insert(name.to_owned(), value);
            changed = true;
        }
    };
    put(
        "frequency",
        fields.frequency.map(|f| {
            json!(match f {
                Frequency::Minute => "Minute",
                Frequency::Hour => "Hour",
                Frequency::Day => "Day",
                Frequency::Week => "Week",
                Frequency::Month => "Month",
            })
        }),
    );
    put("interval", fields.interval.map(|i| json!(i)));
    put("startTime", fields.start_time.as_ref().map(|t| json!(t)));
    put("endTime", fields.end_time.as_ref().map(|t| json!(t)));
    put("timeZone", fields.time_zone.as_ref().map(|z| json!(z)));
    put("hours", (!fields.hours.is_empty()).then(|| json!(fields.hours)));
    put("minutes", (!fields.minutes.is_empty()).then(|| json!(fields.minutes)));
    put(
        "weekDays",
        (!fields.week_days.is_empty()).then(|| json!(fields.week_days)),
    );
    if changed {
        body.insert("recurrence".to_owned(), Value::Object(recurrence));
    }
    Ok(Value::Object(body))
}
