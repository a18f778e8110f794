//! `mlgrid event-subscription ...`, shaped like `az eventgrid event-subscription`.

use anyhow::{Context, anyhow, bail};
use mlgrid_core::resource::{SourceKind, parse_resource_path};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::args::{
    DeadLetterCommand, DeadLetterSelection, EventSubscriptionCommand, SubscriptionRef, SubscriptionSettings,
    SubscriptionSource,
};
use crate::client::{Client, list_value};

/// The API path of a source's subscriptions.
fn collection(source: &SubscriptionSource) -> anyhow::Result<String> {
    let (kind, name) = match (&source.workspace, &source.topic, &source.source_resource_id) {
        (Some(ws), _, _) => (SourceKind::Workspace, ws.clone()),
        (_, Some(topic), _) => (SourceKind::Topic, topic.clone()),
        (_, _, Some(id)) => parse_resource_path(id).ok_or_else(|| {
            anyhow!("`{id}` is not the resource id of a workspace or topic (see `mlgrid workspace show`)")
        })?,
        _ => bail!("name the source with --workspace, --topic or --source-resource-id"),
    };
    Ok(match kind {
        SourceKind::Workspace => format!("/v1/workspaces/{name}/eventSubscriptions"),
        SourceKind::Topic => format!("/v1/topics/{name}/eventSubscriptions"),
    })
}

fn path(subscription: &SubscriptionRef) -> anyhow::Result<String> {
    Ok(format!("{}/{}", collection(&subscription.source)?, subscription.name))
}

/// A number as typed: integers stay integers in the JSON.
fn number(operator: &str, value: &str) -> anyhow::Result<Value> {
    if let Ok(n) = value.parse::<i64>() {
        return Ok(json!(n));
    }
    let n: f64 = value
        .parse()
        .map_err(|_| anyhow!("{operator} takes numbers; `{value}` is not one"))?;
    Ok(json!(n))
}

/// One `--advanced-filter KEY OPERATOR VALUE...` as Event Grid's JSON. Single-value
/// operators get `value`, the others `values`; ranges are written `lo,hi`.
pub fn advanced_filter(args: &[String]) -> anyhow::Result<Value> {
    let [key, operator, values @ ..] = args else {
        bail!("--advanced-filter takes KEY OPERATOR [VALUE...]");
    };
    let mut filter = json!({"operatorType": operator, "key": key});
    match operator.as_str() {
        "NumberLessThan" | "NumberGreaterThan" | "NumberLessThanOrEquals" | "NumberGreaterThanOrEquals" => {
            let [value] = values else {
                bail!("{operator} takes exactly one value")
            };
            filter["value"] = number(operator, value)?;
        }
        "BoolEquals" => {
            let [value] = values else {
                bail!("BoolEquals takes exactly one value, true or false")
            };
            let value: bool = value
                .parse()
                .map_err(|_| anyhow!("BoolEquals takes true or false, not `{value}`"))?;
            filter["value"] = json!(value);
        }
        "NumberIn" | "NumberNotIn" => {
            filter["values"] = values
                .iter()
                .map(|v| number(operator, v))
                .collect::<anyhow::Result<_>>()?;
        }
        "NumberInRange" | "NumberNotInRange" => {
            let ranges = values
                .iter()
                .map(|range| {
                    let (lo, hi) = range
                        .split_once(',')
                        .ok_or_else(|| anyhow!("{operator} takes ranges written LO,HI, not `{range}`"))?;
                    Ok(json!([number(operator, lo.trim())?, number(operator, hi.trim())?]))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            filter["values"] = json!(ranges);
        }
        "IsNullOrUndefined" | "IsNotNull" => {
            if !values.is_empty() {
                bail!("{operator} takes no value");
            }
        }
        // String operators, and unknown ones that the server will name.
        _ => filter["values"] = json!(values),
    }
    Ok(filter)
}

/// Writes the given settings into a subscription's `properties`.
fn apply(properties: &mut Map<String, Value>, settings: SubscriptionSettings) -> anyhow::Result<()> {
    let destination = properties
        .entry("destination")
        .or_insert_with(|| json!({"endpointType": "WebHook", "properties": {}}));
    if let Some(kind) = &settings.endpoint_type {
        let pipeline = kind.eq_ignore_ascii_case("pipeline");
        destination["endpointType"] = json!(if pipeline { "Pipeline" } else { "WebHook" });
        // The other kind's settings go with it.
        if let Some(properties) = destination["properties"].as_object_mut() {
            let stale: &[&str] = if pipeline {
                &["endpointUrl"]
            } else {
                &["pipeline", "workspace", "experimentName", "parameterAssignments"]
            };
            for key in stale {
                properties.remove(*key);
            }
        }
    }
    let is_pipeline = destination["endpointType"]
        .as_str()
        .is_some_and(|kind| kind.eq_ignore_ascii_case("Pipeline"));
    if let Some(endpoint) = settings.endpoint {
        let key = if is_pipeline { "pipeline" } else { "endpointUrl" };
        destination["properties"][key] = json!(endpoint);
    }
    if let Some(workspace) = settings.pipeline_workspace {
        destination["properties"]["workspace"] = json!(workspace);
    }
    if let Some(experiment) = settings.pipeline_experiment_name {
        destination["properties"]["experimentName"] = json!(experiment);
    }
    if !settings.pipeline_parameter.is_empty() {
        let mut parameters = Map::new();
        for pair in &settings.pipeline_parameter {
            let Some((name, template)) = pair.split_once('=').filter(|(name, _)| !name.is_empty()) else {
                bail!("--pipeline-parameter `{pair}` is not NAME=TEMPLATE, e.g. model_name='${{data.ModelName}}'");
            };
            parameters.insert(name.to_owned(), json!(template));
        }
        destination["properties"]["parameterAssignments"] = Value::Object(parameters);
    }
    if let Some(n) = settings.max_events_per_batch {
        destination["properties"]["maxEventsPerBatch"] = json!(n);
    }
    if let Some(n) = settings.preferred_batch_size_in_kilobytes {
        destination["properties"]["preferredBatchSizeInKilobytes"] = json!(n);
    }
    let filter = properties.entry("filter").or_insert_with(|| json!({}));
    if let Some(types) = settings.included_event_types {
        filter["includedEventTypes"] = json!(types);
    }
    if let Some(prefix) = settings.subject_begins_with {
        filter["subjectBeginsWith"] = json!(prefix);
    }
    if let Some(suffix) = settings.subject_ends_with {
        filter["subjectEndsWith"] = json!(suffix);
    }
    if settings.subject_case_sensitive {
        filter["isSubjectCaseSensitive"] = json!(true);
    }
    if settings.enable_advanced_filtering_on_arrays {
        filter["enableAdvancedFilteringOnArrays"] = json!(true);
    }
    if !settings.advanced_filters.is_empty() {
        let filters = settings
            .advanced_filters
            .iter()
            .map(|f| advanced_filter(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        filter["advancedFilters"] = json!(filters);
    }
    if let Some(schema) = settings.event_delivery_schema {
        let canonical = if schema.eq_ignore_ascii_case("CloudEventSchemaV1_0") {
            "CloudEventSchemaV1_0"
        } else {
            "EventGridSchema"
        };
        properties.insert("eventDeliverySchema".to_owned(), json!(canonical));
    }
    let retry = properties.entry("retryPolicy").or_insert_with(|| json!({}));
    if let Some(n) = settings.max_delivery_attempts {
        retry["maxDeliveryAttempts"] = json!(n);
    }
    if let Some(n) = settings.event_ttl {
        retry["eventTimeToLiveInMinutes"] = json!(n);
    }
    if let Some(labels) = settings.labels {
        properties.insert("labels".to_owned(), json!(labels));
    }
    if let Some(expiration) = settings.expiration_date {
        properties.insert("expirationTimeUtc".to_owned(), json!(expiration));
    }
    if let Some(folder) = settings.deadletter_folder {
        properties.insert(
            "deadLetterDestination".to_owned(),
            json!({"endpointType": "Datastore", "properties": {"datastoreName": settings.deadletter_datastore, "folder": folder}}),
        );
    }
    Ok(())
}

/// The path that puts a subscription, with the handshake skipped if asked.
fn put_path(subscription: &SubscriptionRef, settings: &SubscriptionSettings) -> anyhow::Result<String> {
    let path = path(subscription)?;
    Ok(if settings.skip_validation {
        format!("{path}?skipValidation=true")
    } else {
        path
    })
}

/// The whole endpoint URL, query included: Event Grid's `getFullUrl`, which takes
/// Contributor.
async fn full_url(client: &Client, subscription: &SubscriptionRef) -> anyhow::Result<Value> {
    let answer = client
        .post(&format!("{}/getFullUrl", path(subscription)?), &json!({}))
        .await?;
    answer
        .get("endpointUrl")
        .cloned()
        .context("the server's getFullUrl answer has no endpointUrl")
}

/// Puts the whole URL in the place of `endpointBaseUrl`, as the subscription was put.
fn set_full_url(properties: &mut Map<String, Value>, url: Value) {
    if let Some(Value::Object(endpoint)) = properties.get_mut("destination").and_then(|d| d.get_mut("properties")) {
        endpoint.remove("endpointBaseUrl");
        endpoint.insert("endpointUrl".to_owned(), url);
    }
}

/// The fields of a shown subscription that a client may set again.
const SETTABLE: [&str; 7] = [
    "destination",
    "filter",
    "eventDeliverySchema",
    "retryPolicy",
    "deadLetterDestination",
    "labels",
    "expirationTimeUtc",
];

pub async fn run(client: &Client, command: EventSubscriptionCommand) -> anyhow::Result<Value> {
    match command {
        EventSubscriptionCommand::Create { subscription, settings } => {
            if settings.endpoint.is_none() {
                bail!(
                    "--endpoint is required: the URL events are delivered to, or with --endpoint-type pipeline \
                     the id of a published pipeline or the name of a pipeline endpoint"
                );
            }
            let put = put_path(&subscription, &settings)?;
            let mut properties = Map::new();
            apply(&mut properties, settings)?;
            client
                .call(Method::PUT, &put, Some(&json!({"properties": properties})))
                .await
        }
        EventSubscriptionCommand::Update { subscription, settings } => {
            let put = put_path(&subscription, &settings)?;
            let current = client.get(&path(&subscription)?).await?;
            let shown = current["properties"]
                .as_object()
                .context("the server's subscription has no properties")?;
            let mut properties: Map<String, Value> = shown
                .iter()
                .filter(|(k, _)| SETTABLE.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // The server shows a webhook without its query; the same URL is put back.
            let webhook = properties
                .get("destination")
                .and_then(|d| d["properties"].get("endpointBaseUrl"))
                .is_some();
            if settings.endpoint.is_none() && webhook {
                let url = full_url(client, &subscription).await?;
                set_full_url(&mut properties, url);
            }
            apply(&mut properties, settings)?;
            let etag = current["etag"].as_str().unwrap_or("*").to_owned();
            client
                .call_if_match(Method::PUT, &put, &json!({"properties": properties}), &etag)
                .await
        }
        EventSubscriptionCommand::Show {
            subscription,
            include_full_endpoint_url,
        } => {
            let path = path(&subscription)?;
            let mut shown = client.get(&path).await?;
            if include_full_endpoint_url && let Some(Value::Object(properties)) = shown.get_mut("properties") {
                let url = full_url(client, &subscription).await?;
                set_full_url(properties, url);
            }
            shown["deliveryStats"] = client.get(&format!("{path}/deliveryStats")).await?;
            Ok(shown)
        }
        EventSubscriptionCommand::Attempts { subscription, limit } => list_value(
            client
                .get(&format!("{}/attempts?limit={limit}", path(&subscription)?))
                .await?,
        ),
        EventSubscriptionCommand::Deadletter(command) => dead_letters(client, command).await,
        EventSubscriptionCommand::SigningSecret {
            subscription,
            rotate,
            grace_minutes,
        } => {
            let path = format!("{}/signingSecret", path(&subscription)?);
            if rotate {
                client
                    .post(&format!("{path}/rotate"), &json!({"graceMinutes": grace_minutes}))
                    .await
            } else {
                client.post(&path, &json!({})).await
            }
        }
        EventSubscriptionCommand::List { source } => list_value(client.get(&collection(&source)?).await?),
        EventSubscriptionCommand::Delete(subscription) => client.delete(&path(&subscription)?).await,
        EventSubscriptionCommand::Events {
            subscription,
            after,
            limit,
        } => {
            let page = client
                .get(&format!("{}/events?after={after}&limit={limit}", path(&subscription)?))
                .await?;
            Ok(page["events"].clone())
        }
    }
}

async fn dead_letters(client: &Client, command: DeadLetterCommand) -> anyhow::Result<Value> {
    match command {
        DeadLetterCommand::List {
            subscription,
            after,
            limit,
        } => list_value(
            client
                .get(&format!(
                    "{}/deadLetters?after={after}&limit={limit}",
                    path(&subscription)?
                ))
                .await?,
        ),
        DeadLetterCommand::Show { subscription, sequence } => {
            client
                .get(&format!("{}/deadLetters/{sequence}", path(&subscription)?))
                .await
        }
        DeadLetterCommand::Redeliver {
            subscription,
            selection,
        } => {
            client
                .post(
                    &format!("{}/deadLetters/redeliver", path(&subscription)?),
                    &selection_body(selection),
                )
                .await
        }
        DeadLetterCommand::Purge {
            subscription,
            selection,
        } => {
            client
                .post(
                    &format!("{}/deadLetters/purge", path(&subscription)?),
                    &selection_body(selection),
                )
                .await
        }
    }
}

fn selection_body(selection: DeadLetterSelection) -> Value {
    json!({
        "sequences": selection.sequences,
        "deadLetterReason": selection.reason,
        "eventType": selection.event_type,
        "lastHttpStatusCode": selection.status_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(args: &[&str]) -> anyhow::Result<Value> {
        advanced_filter(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn advanced_filters_are_written_as_event_grid_reads_them() {
        assert_eq!(
            filter(&["data.n", "NumberIn", "1", "2.5"]).unwrap(),
            json!({"operatorType": "NumberIn", "key": "data.n", "values": [1, 2.5]})
        );
        assert_eq!(filter(&["data.n", "NumberLessThan", "7"]).unwrap()["value"], json!(7));
        assert_eq!(
            filter(&["data.n", "NumberInRange", "1,5", "10, 20"]).unwrap()["values"],
            json!([[1, 5], [10, 20]])
        );
        assert_eq!(
            filter(&["data.ok", "BoolEquals", "true"]).unwrap()["value"],
            json!(true)
        );
        assert_eq!(
            filter(&["data.s", "StringIn", "a", "b"]).unwrap()["values"],
            json!(["a", "b"])
        );
        assert!(
            filter(&["data.x", "IsNullOrUndefined"])
                .unwrap()
                .get("values")
                .is_none()
        );
    }

    #[test]
    fn wrong_values_are_refused_before_sending() {
        assert!(
            filter(&["data.n", "NumberIn", "big"])
                .unwrap_err()
                .to_string()
                .contains("`big`")
        );
        assert!(filter(&["data.n", "NumberLessThan", "1", "2"]).is_err());
        assert!(
            filter(&["data.n", "NumberInRange", "5"])
                .unwrap_err()
                .to_string()
                .contains("LO,HI")
        );
        assert!(filter(&["data.b", "BoolEquals", "yes"]).is_err());
        assert!(filter(&["data.x", "IsNotNull", "1"]).is_err());
    }
}
