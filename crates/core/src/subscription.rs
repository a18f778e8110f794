//! Event subscriptions: which events of a source go where, and how.
//!
//! The shape is Event Grid's ARM resource (`properties` of
//! `Microsoft.EventGrid/eventSubscriptions`), so that definitions written for Azure read
//! the same here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::EventSchema;
use crate::filter::EventFilter;
use crate::ml::MlEventType;
use crate::resource::SourceKind;
use crate::time::parse_rfc3339;

/// Where a subscription stands in its endpoint's validation handshake: its
/// `provisioningState`, in Event Grid's words. Only a `Succeeded` subscription receives
/// events; the others keep their backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProvisioningState {
    /// The endpoint proved it wants the events (or the handshake was skipped).
    Succeeded,
    /// The endpoint has not answered the handshake yet.
    AwaitingManualAction,
    /// The endpoint failed or ignored the handshake.
    Failed,
}

impl ProvisioningState {
    pub const ALL: [ProvisioningState; 3] = [
        ProvisioningState::Succeeded,
        ProvisioningState::AwaitingManualAction,
        ProvisioningState::Failed,
    ];

    /// Event Grid's name, as the API shows it and the store keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningState::Succeeded => "Succeeded",
            ProvisioningState::AwaitingManualAction => "AwaitingManualAction",
            ProvisioningState::Failed => "Failed",
        }
    }
}

impl fmt::Display for ProvisioningState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProvisioningState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProvisioningState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown provisioning state `{s}`; the states are {}",
                    ProvisioningState::ALL.map(ProvisioningState::as_str).join(", ")
                )
            })
    }
}

/// Event Grid's bounds on the delivery settings.
pub const MAX_EVENTS_PER_BATCH: u32 = 5000;
pub const MAX_BATCH_KILOBYTES: u32 = 1024;
pub const MAX_DELIVERY_ATTEMPTS: u32 = 30;
pub const MAX_EVENT_TTL_MINUTES: u32 = 1440;
/// Most labels on one subscription, and longest label.
pub const MAX_LABELS: usize = 25;
pub const MAX_LABEL_LEN: usize = 255;

/// Where events go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// `WebHook`.
    pub endpoint_type: String,
    pub properties: DestinationProperties,
}

impl Destination {
    /// Whether events are posted to a URL (and the receiver must consent first).
    pub fn is_webhook(&self) -> bool {
        self.endpoint_type.eq_ignore_ascii_case(WEBHOOK)
    }

    /// Whether each event submits a published pipeline.
    pub fn is_pipeline(&self) -> bool {
        self.endpoint_type.eq_ignore_ascii_case(PIPELINE)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationProperties {
    /// WebHook: the receiver's URL (http or https).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint_url: String,
    /// Pipeline: the published pipeline's id, or a pipeline endpoint's name (which runs
    /// the endpoint's default pipeline at the time of each event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Pipeline, on a topic's subscription: the workspace whose pipeline runs (a
    /// workspace's subscriptions run their own workspace's pipelines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Pipeline: the experiment the runs belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_name: Option<String>,
    /// Pipeline: parameter values, as templates of the event (`${data.ModelName}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameter_assignments: BTreeMap<String, String>,
    /// Most events in one delivery (1-5000; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events_per_batch: Option<u32>,
    /// Preferred size of one delivery in KB (1-1024; default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_batch_size_in_kilobytes: Option<u32>,
}

/// How long and how often delivery is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_attempts")]
    pub max_delivery_attempts: u32,
    #[serde(default = "default_ttl")]
    pub event_time_to_live_in_minutes: u32,
}

fn default_attempts() -> u32 {
    MAX_DELIVERY_ATTEMPTS
}

fn default_ttl() -> u32 {
    MAX_EVENT_TTL_MINUTES
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_delivery_attempts: default_attempts(),
            event_time_to_live_in_minutes: default_ttl(),
        }
    }
}

/// The datastore every workspace has, as in Azure ML: a folder under the server's data
/// directory. The only datastore dead letters can go to until datastores can be
/// registered.
pub const DEFAULT_DATASTORE: &str = "workspaceblobstore";

/// A folder of a datastore that dead-lettered events are written to, as JSON arrays
/// (Event Grid writes them to a storage blob container).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterDestination {
    /// `Datastore`.
    pub endpoint_type: String,
    pub properties: DeadLetterFolder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterFolder {
    pub datastore_name: String,
    /// A relative path on the datastore, `/`-separated.
    #[serde(default)]
    pub folder: String,
}

impl DeadLetterDestination {
    fn validate(&self) -> Result<(), InvalidSubscription> {
        if !self.endpoint_type.eq_ignore_ascii_case("Datastore") {
            return Err(invalid(format!(
                "deadLetterDestination endpointType `{}` is not supported; use Datastore",
                self.endpoint_type
            )));
        }
        let DeadLetterFolder { datastore_name, folder } = &self.properties;
        if datastore_name != DEFAULT_DATASTORE {
            return Err(invalid(format!(
                "deadLetterDestination datastore `{datastore_name}` does not exist; the datastores available are: \
                 {DEFAULT_DATASTORE}"
            )));
        }
        validate_dead_letter_folder(folder)?;
        Ok(())
    }
}

/// Longest dead-letter folder, in bytes of UTF-8.
pub const MAX_FOLDER_BYTES: usize = 1024;
/// Longest folder name within a dead-letter folder path, in bytes: what common file
/// systems allow.
pub const MAX_FOLDER_SEGMENT_BYTES: usize = 255;

/// Checks a dead-letter folder: a relative, `/`-separated path on the datastore (empty
/// for its top), with no `.`, `..` or empty segments, no backslash or control character,
/// at most [`MAX_FOLDER_BYTES`] long and [`MAX_FOLDER_SEGMENT_BYTES`] per segment. A
/// trailing `/` is allowed.
pub fn validate_dead_letter_folder(folder: &str) -> Result<(), InvalidSubscription> {
    const FIELD: &str = "deadLetterDestination.properties.folder (--deadletter-folder)";
    let shown = || {
        let head: String = folder.chars().take(64).collect();
        let more = if head.len() < folder.len() { "..." } else { "" };
        // Debug-quoted, so that control characters show as escapes.
        format!("{head:?}{more}")
    };
    let problem = if folder.len() > MAX_FOLDER_BYTES {
        format!(
            "is {} bytes long; the limit is {MAX_FOLDER_BYTES} bytes, use a shorter path",
            folder.len()
        )
    } else if let Some(c) = folder.chars().find(|c| c.is_control()) {
        format!(
            "{} holds the control character U+{:04X}; use printable characters only",
            shown(),
            u32::from(c)
        )
    } else if folder.starts_with('/') {
        format!(
            "{} is an absolute path; give a path relative to the datastore, such as `deadletters/orders`",
            shown()
        )
    } else if folder.contains('\\') {
        format!("{} holds a backslash; separate folders with `/`", shown())
    } else if let Some(segment) = folder
        .trim_end_matches('/')
        .split('/')
        .find(|s| matches!(*s, "" | "." | "..") && !folder.is_empty() || s.len() > MAX_FOLDER_SEGMENT_BYTES)
    {
        match segment {
            "" => format!("{} has an empty segment (`//`); remove the extra `/`", shown()),
            "." | ".." => format!(
                "{} has a `{segment}` segment; give a plain path inside the datastore",
                shown()
            ),
            long => format!(
                "{} has a folder name of {} bytes; each may be at most {MAX_FOLDER_SEGMENT_BYTES} bytes",
                shown(),
                long.len()
            ),
        }
    } else {
        return Ok(());
    };
    Err(invalid(format!("{FIELD}: {problem}")))
}

/// What a subscription is: the `properties` of Event Grid's resource that a client sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub destination: Destination,
    #[serde(default)]
    pub filter: EventFilter,
    /// `EventGridSchema` (default) or `CloudEventSchemaV1_0`.
    #[serde(default = "default_schema")]
    pub event_delivery_schema: EventSchema,
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// Where dead-lettered events are written besides the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_destination: Option<DeadLetterDestination>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// After this time the subscription receives nothing and is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time_utc: Option<String>,
}

fn default_schema() -> EventSchema {
    EventSchema::EventGridSchema
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSubscription(pub String);

fn invalid(message: impl Into<String>) -> InvalidSubscription {
    InvalidSubscription(message.into())
}

/// Checks an event subscription name: 3-64 letters, digits and `-` (Event Grid's rule).
pub fn validate_subscription_name(name: &str) -> Result<(), InvalidSubscription> {
    let ok = (3..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "event subscription name `{name}` is invalid: use 3 to 64 letters, digits and `-`"
        )))
    }
}

impl SubscriptionSpec {
    /// The expiration time, parsed.
    pub fn expires_at(&self) -> Result<Option<DateTime<Utc>>, InvalidSubscription> {
        self.expiration_time_utc
            .as_deref()
            .map(|t| {
                parse_rfc3339(t).map_err(|_| {
                    invalid(format!(
                        "expirationTimeUtc `{t}` is not an RFC 3339 time such as 2027-01-01T00:00:00Z"
                    ))
                })
            })
            .transpose()
    }

    /// Checks everything a subscription on a source of `kind` must satisfy at `now`.
    pub fn validate(&self, kind: SourceKind, now: DateTime<Utc>) -> Result<(), InvalidSubscription> {
        let destination = &self.destination;
        if destination.is_webhook() {
            validate_endpoint_url(&destination.properties.endpoint_url)?;
            if destination.properties.pipeline.is_some()
                || destination.properties.experiment_name.is_some()
                || destination.properties.workspace.is_some()
                || !destination.properties.parameter_assignments.is_empty()
            {
                return Err(invalid(
                    "pipeline, workspace, experimentName and parameterAssignments are for endpointType Pipeline, not WebHook",
                ));
            }
        } else if destination.is_pipeline() {
            validate_pipeline_trigger(kind, &destination.properties)?;
        } else {
            return Err(invalid(format!(
                "destination endpointType `{}` is not supported; use WebHook or Pipeline",
                destination.endpoint_type
            )));
        }
        check_range(
            "maxEventsPerBatch",
            destination.properties.max_events_per_batch,
            1,
            MAX_EVENTS_PER_BATCH,
        )?;
        check_range(
            "preferredBatchSizeInKilobytes",
            destination.properties.preferred_batch_size_in_kilobytes,
            1,
            MAX_BATCH_KILOBYTES,
        )?;
        check_range(
            "maxDeliveryAttempts",
            Some(self.retry_policy.max_delivery_attempts),
            1,
            MAX_DELIVERY_ATTEMPTS,
        )?;
        check_range(
            "eventTimeToLiveInMinutes",
            Some(self.retry_policy.event_time_to_live_in_minutes),
            1,
            MAX_EVENT_TTL_MINUTES,
        )?;
        self.filter.validate().map_err(|e| invalid(format!("filter: {e}")))?;
        if let Some(destination) = &self.dead_letter_destination {
            destination.validate()?;
        }
        if kind == SourceKind::Workspace {
            for event_type in self.filter.included_event_types.iter().flatten() {
                event_type
                    .parse::<MlEventType>()
                    .map_err(|e| invalid(format!("includedEventTypes: {e}")))?;
            }
        }
        if self.labels.len() > MAX_LABELS {
            return Err(invalid(format!(
                "at most {MAX_LABELS} labels are allowed; this has {}",
                self.labels.len()
            )));
        }
        if let Some(label) = self.labels.iter().find(|l| l.is_empty() || l.len() > MAX_LABEL_LEN) {
            return Err(invalid(format!(
                "label `{label}` must be 1 to {MAX_LABEL_LEN} characters"
            )));
        }
        if let Some(expires) = self.expires_at()?
            && expires <= now
        {
            return Err(invalid(format!(
                "expirationTimeUtc {} is not in the future",
                self.expiration_time_utc.as_deref().unwrap_or_default()
            )));
        }
        Ok(())
    }
}

/// The destination type that posts events to a URL.
pub const WEBHOOK: &str = "WebHook";
/// The destination type that submits a published pipeline for each event.
pub const PIPELINE: &str = "Pipeline";

/// Checks a pipeline trigger: naming the workspace whose pipeline runs when on a topic,
/// a pipeline and an experiment, with parameter templates that read, one event per run.
fn validate_pipeline_trigger(kind: SourceKind, properties: &DestinationProperties) -> Result<(), InvalidSubscription> {
    match (kind, &properties.workspace) {
        (SourceKind::Workspace, Some(_)) => {
            return Err(invalid(
                "a workspace's pipeline trigger runs the workspace's own pipelines: leave out `workspace`",
            ));
        }
        (SourceKind::Topic, None) => {
            return Err(invalid(
                "a topic's pipeline trigger needs `workspace`: the workspace whose pipeline runs",
            ));
        }
        _ => {}
    }
    if !properties.endpoint_url.is_empty() {
        return Err(invalid(
            "endpointType Pipeline takes `pipeline` (a pipeline id or endpoint name), not endpointUrl",
        ));
    }
    match properties.pipeline.as_deref() {
        Some(pipeline) if !pipeline.trim().is_empty() => {}
        _ => {
            return Err(invalid(
                "endpointType Pipeline needs `pipeline`: the id of a published pipeline or the name of a pipeline endpoint",
            ));
        }
    }
    let experiment = properties.experiment_name.as_deref().unwrap_or_default();
    crate::lifecycle::validate_asset_name("experiment", experiment)
        .map_err(|e| invalid(format!("endpointType Pipeline needs experimentName: {e}")))?;
    if properties.max_events_per_batch.is_some_and(|n| n != 1) {
        return Err(invalid(
            "endpointType Pipeline starts one run per event: maxEventsPerBatch must be 1",
        ));
    }
    for (name, template) in &properties.parameter_assignments {
        crate::pipeline::trigger::TriggerTemplate::parse(template)
            .map_err(|e| invalid(format!("parameterAssignments `{name}`: {e}")))?;
    }
    Ok(())
}

fn check_range(what: &str, value: Option<u32>, min: u32, max: u32) -> Result<(), InvalidSubscription> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            Err(invalid(format!("{what} must be between {min} and {max}, got {v}")))
        }
        _ => Ok(()),
    }
}

/// Checks that a webhook URL is an absolute http or https URL with a host. Whether the
/// host may be reached (private, loopback, metadata addresses) is the delivery's check.
pub fn validate_endpoint_url(url: &str) -> Result<(), InvalidSubscription> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("endpointUrl `{url}` is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("endpointUrl `{url}` must use http or https")));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("endpointUrl `{url}` has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "endpointUrl must not carry credentials; authenticate the receiver with the webhook signature instead",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> SubscriptionSpec {
        serde_json::from_value(json).unwrap()
    }

    fn webhook() -> serde_json::Value {
        serde_json::json!({"endpointType": "WebHook", "properties": {"endpointUrl": "https://example.com/hook"}})
    }

    #[test]
    fn defaults_are_event_grids() {
        let s = spec(serde_json::json!({"destination": webhook()}));
        assert_eq!(s.event_delivery_schema, EventSchema::EventGridSchema);
        assert_eq!(
            s.retry_policy,
            RetryPolicy {
                max_delivery_attempts: 30,
                event_time_to_live_in_minutes: 1440
            }
        );
        assert!(s.validate(SourceKind::Topic, Utc::now()).is_ok());
    }

    #[test]
    fn bad_settings_are_refused_with_what_to_fix() {
        let now = Utc::now();
        let cases = [
            (
                serde_json::json!({"destination": {"endpointType": "Carrier", "properties": {"endpointUrl": "https://x"}}}),
                "use WebHook",
            ),
            (
                serde_json::json!({"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "ftp://x/y"}}}),
                "http or https",
            ),
            (
                serde_json::json!({"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "not a url"}}}),
                "not a valid URL",
            ),
            (
                serde_json::json!({"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://u:p@x/"}}}),
                "credentials",
            ),
            (
                serde_json::json!({"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://x", "maxEventsPerBatch": 5001}}}),
                "between 1 and 5000",
            ),
            (
                serde_json::json!({"destination": webhook(), "retryPolicy": {"maxDeliveryAttempts": 0}}),
                "maxDeliveryAttempts",
            ),
            (
                serde_json::json!({"destination": webhook(), "retryPolicy": {"eventTimeToLiveInMinutes": 1441}}),
                "eventTimeToLiveInMinutes",
            ),
            (
                serde_json::json!({"destination": webhook(), "expirationTimeUtc": "2001-01-01T00:00:00Z"}),
                "not in the future",
            ),
            (
                serde_json::json!({"destination": webhook(), "expirationTimeUtc": "soon"}),
                "RFC 3339",
            ),
            (serde_json::json!({"destination": webhook(), "labels": [""]}), "label"),
        ];
        for (json, needle) in cases {
            let err = spec(json.clone())
                .validate(SourceKind::Topic, now)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{json}: `{err}` should mention `{needle}`");
        }
    }

    #[test]
    fn workspace_sources_take_only_azure_ml_event_types() {
        let s = spec(
            serde_json::json!({"destination": webhook(), "filter": {"includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered", "Shop.OrderPlaced"]}}),
        );
        let err = s.validate(SourceKind::Workspace, Utc::now()).unwrap_err().to_string();
        assert!(
            err.contains("Shop.OrderPlaced") && err.contains("ModelDeployed"),
            "{err}"
        );
        assert!(
            s.validate(SourceKind::Topic, Utc::now()).is_ok(),
            "custom topics take any type"
        );
    }

    /// The store keeps a definition as the JSON it serializes to and the API shows it
    /// serialized again from the parsed definition: both must be the same text.
    #[test]
    fn a_definition_serializes_back_to_the_json_it_was_read_from() {
        let full = spec(serde_json::json!({
            "destination": {"endpointType": "WebHook", "properties": {
                "endpointUrl": "https://example.com/hook?code=1", "maxEventsPerBatch": 10,
                "preferredBatchSizeInKilobytes": 64}},
            "filter": {
                "includedEventTypes": ["Shop.OrderPlaced"], "subjectBeginsWith": "/orders/",
                "subjectEndsWith": ".json", "isSubjectCaseSensitive": true,
                "enableAdvancedFilteringOnArrays": true,
                "advancedFilters": [
                    {"operatorType": "NumberIn", "key": "data.size", "values": [1, 2.5]},
                    {"operatorType": "NumberInRange", "key": "data.size", "values": [[0, 10]]},
                    {"operatorType": "NumberLessThan", "key": "data.size", "value": 3},
                    {"operatorType": "BoolEquals", "key": "data.ok", "value": true},
                    {"operatorType": "StringContains", "key": "subject", "values": ["a", "é"]},
                    {"operatorType": "IsNullOrUndefined", "key": "data.gone"}
                ]},
            "eventDeliverySchema": "CloudEventSchemaV1_0",
            "retryPolicy": {"maxDeliveryAttempts": 3, "eventTimeToLiveInMinutes": 60},
            "deadLetterDestination": {"endpointType": "Datastore",
                "properties": {"datastoreName": "workspaceblobstore", "folder": "dead/orders"}},
            "labels": ["a", "b"],
            "expirationTimeUtc": "2099-01-01T00:00:00Z"
        }));
        for definition in [full, spec(serde_json::json!({"destination": webhook()}))] {
            let stored = serde_json::to_string(&definition).unwrap();
            let read: SubscriptionSpec = serde_json::from_str(&stored).unwrap();
            assert_eq!(read, definition);
            assert_eq!(serde_json::to_string(&read).unwrap(), stored);
            assert_eq!(
                serde_json::to_value(&read).unwrap(),
                serde_json::from_str::<serde_json::Value>(&stored).unwrap()
            );
        }
    }

    #[test]
    fn provisioning_states_read_and_write_event_grids_names() {
        for state in ProvisioningState::ALL {
            assert_eq!(state.as_str().parse::<ProvisioningState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        let err = "Pending".parse::<ProvisioningState>().unwrap_err();
        assert!(
            err.contains("`Pending`") && err.contains("Succeeded, AwaitingManualAction, Failed"),
            "{err}"
        );
    }

    #[test]
    fn names_follow_event_grid() {
        assert!(validate_subscription_name("sub-1").is_ok());
        assert!(validate_subscription_name("s_1").is_err());
        assert!(validate_subscription_name("ab").is_err());
    }

    #[test]
    fn dead_letter_destinations_name_a_datastore_folder() {
        let with = |destination: serde_json::Value| {
            spec(serde_json::json!({"destination": webhook(), "deadLetterDestination": destination}))
                .validate(SourceKind::Topic, Utc::now())
        };
        let folder = |datastore: &str, folder: &str| serde_json::json!({"endpointType": "Datastore", "properties": {"datastoreName": datastore, "folder": folder}});
        assert_eq!(with(folder("workspaceblobstore", "deadletters/orders")), Ok(()));
        let unknown = with(folder("blobs", "x")).unwrap_err().0;
        assert!(
            unknown.contains("`blobs` does not exist") && unknown.contains("workspaceblobstore"),
            "{unknown}"
        );
        for bad in ["../etc", "a/../b", "a//b", "a\\b", "/etc", "a/\0/b", "a\nb"] {
            let error = with(folder("workspaceblobstore", bad)).unwrap_err().0;
            assert!(
                error.starts_with("deadLetterDestination.properties.folder (--deadletter-folder): "),
                "{bad}: {error}"
            );
        }
        let blob =
            serde_json::json!({"endpointType": "StorageBlob", "properties": {"datastoreName": "workspaceblobstore"}});
        assert!(with(blob).unwrap_err().0.contains("use Datastore"));
    }

    #[test]
    fn dead_letter_folders_are_plain_relative_paths_within_limits() {
        let segment = "s".repeat(MAX_FOLDER_SEGMENT_BYTES);
        let longest = [segment.as_str(); 4].join("/") + "/";
        assert_eq!(longest.len(), MAX_FOLDER_BYTES);
        for good in [
            "",
            "deadletters",
            "deadletters/orders/",
            "a.b/c..d/.e",
            "dossiers/été",
            longest.as_str(),
        ] {
            assert_eq!(validate_dead_letter_folder(good), Ok(()), "{good}");
        }
        let cases = [
            (
                "a\0b".to_owned(),
                "\"a\\0b\" holds the control character U+0000; use printable characters only",
            ),
            ("a\u{7f}".to_owned(), "U+007F"),
            ("a\u{85}".to_owned(), "U+0085"),
            (
                "/etc/cron.d".to_owned(),
                "is an absolute path; give a path relative to the datastore",
            ),
            ("/".to_owned(), "is an absolute path"),
            ("..".to_owned(), "has a `..` segment"),
            ("a/../../b".to_owned(), "has a `..` segment"),
            ("./a".to_owned(), "has a `.` segment"),
            ("a//b".to_owned(), "has an empty segment (`//`)"),
            ("a\\b".to_owned(), "holds a backslash"),
            (
                format!("{segment}x/b"),
                "has a folder name of 256 bytes; each may be at most 255 bytes",
            ),
            (format!("{longest}x"), "is 1025 bytes long; the limit is 1024 bytes"),
        ];
        for (folder, needle) in cases {
            let error = validate_dead_letter_folder(&folder).unwrap_err().0;
            assert!(
                error.starts_with("deadLetterDestination.properties.folder (--deadletter-folder): ")
                    && error.contains(needle),
                "{folder:?}: {error}"
            );
            assert!(!error.contains('\0'), "control characters are escaped: {error:?}");
        }
    }
}
