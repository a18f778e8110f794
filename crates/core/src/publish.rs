//! Validation of what publishers send: Event Grid event arrays and CloudEvents.
//!
//! The rules are Event Grid's. An Event Grid event needs `id`, `subject`, `eventType`
//! and `eventTime`; `topic`, if given, must be the topic's resource path; `metadataVersion`,
//! if given, must be `"1"`; `dataVersion` defaults to the empty string. A CloudEvent needs
//! `specversion` `"1.0"`, `id`, `source` and `type`. Each event is at most
//! [`PublishLimits::max_event_bytes`] of JSON. A request is accepted whole or not at all,
//! and an error names the event (by its index in the request) and the field.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::cloud_event::{CloudEvent, SPEC_VERSION};
use crate::event_grid::{EventGridEvent, METADATA_VERSION};
use crate::time::{format_event_time, parse_rfc3339};

/// Size limits on published events.
#[derive(Debug, Clone, Copy)]
pub struct PublishLimits {
    /// Largest event, in bytes of JSON (Event Grid: 1 MB).
    pub max_event_bytes: usize,
}

impl Default for PublishLimits {
    fn default() -> Self {
        PublishLimits {
            max_event_bytes: 1024 * 1024,
        }
    }
}

/// Why a publish request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishError {
    /// The body is not JSON, or not the JSON shape the content type promises.
    InvalidJson(String),
    /// The request holds no event.
    Empty,
    /// One event is larger than the limit.
    EventTooLarge { index: usize, bytes: usize, limit: usize },
    /// One field of one event is missing or wrong.
    InvalidField {
        index: usize,
        field: String,
        problem: String,
    },
}

impl PublishError {
    /// A stable, machine-readable code, in Event Grid's style.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::InvalidJson(_) => "InputJsonInvalid",
            PublishError::Empty => "NoEvents",
            PublishError::EventTooLarge { .. } => "EventTooLarge",
            PublishError::InvalidField { .. } => "InvalidEvent",
        }
    }

    fn field(index: usize, field: &str, problem: impl Into<String>) -> PublishError {
        PublishError::InvalidField {
            index,
            field: field.to_owned(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidJson(msg) => f.write_str(msg),
            PublishError::Empty => f.write_str("the request contains no events; send at least one"),
            PublishError::EventTooLarge { index, bytes, limit } => write!(
                f,
                "event [{index}] is {bytes} bytes, over the limit of {limit} bytes per event; \
                 make the event smaller or put large payloads in storage and send a reference"
            ),
            PublishError::InvalidField { index, field, problem } => {
                write!(f, "event [{index}], field `{field}`: {problem}")
            }
        }
    }
}

impl std::error::Error for PublishError {}

/// Splits a JSON array into its elements without parsing them.
fn split_array<'a>(body: &'a [u8], what: &str) -> Result<Vec<&'a RawValue>, PublishError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Err(PublishError::InvalidJson(format!(
            "the request body must be a JSON array of {what}, `[{{...}}, ...]`; \
             wrap a single event in `[` `]`"
        )));
    }
    let events: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|e| PublishError::InvalidJson(format!("the request body is not valid JSON: {e}")))?;
    if events.is_empty() {
        return Err(PublishError::Empty);
    }
    Ok(events)
}

fn check_size(index: usize, raw: &RawValue, limits: PublishLimits) -> Result<(), PublishError> {
    let bytes = raw.get().len();
    if bytes > limits.max_event_bytes {
        return Err(PublishError::EventTooLarge {
            index,
            bytes,
            limit: limits.max_event_bytes,
        });
    }
    Ok(())
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads an optional string field; `null` counts as absent.
fn optional_string(index: usize, field: &str, value: Option<Value>) -> Result<Option<String>, PublishError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(PublishError::field(
            index,
            field,
            format!("must be a string, got {}", describe(&other)),
        )),
    }
}

fn required_string(index: usize, field: &str, value: Option<Value>) -> Result<String, PublishError> {
    optional_string(index, field, value)?.ok_or_else(|| PublishError::field(index, field, "is required and missing"))
}

fn non_empty(index: usize, field: &str, value: String) -> Result<String, PublishError> {
    if value.is_empty() {
        Err(PublishError::field(index, field, "must not be empty"))
    } else {
        Ok(value)
    }
}

fn normalise_time(index: usize, field: &str, value: &str) -> Result<DateTime<Utc>, PublishError> {
    parse_rfc3339(value).map_err(|_| {
        PublishError::field(
            index,
            field,
            format!("must be an RFC 3339 date-time such as 2026-11-26T16:00:00Z, got `{value}`"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEventGridEvent<'a> {
    topic: Option<Value>,
    subject: Option<Value>,
    event_type: Option<Value>,
    event_time: Option<Value>,
    id: Option<Value>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    data_version: Option<Value>,
    metadata_version: Option<Value>,
}

/// Parses and validates an Event Grid publish request: a JSON array of events for the
/// topic whose resource path is `topic`.
///
/// Accepted events have `topic` and `metadataVersion` filled in and `eventTime`
/// normalised to Event Grid's format (UTC, seven fractional digits).
pub fn parse_event_grid_events(
    body: &[u8],
    topic: &str,
    limits: PublishLimits,
) -> Result<Vec<EventGridEvent>, PublishError> {
    let raw_events = split_array(body, "Event Grid events")?;
    let mut events = Vec::with_capacity(raw_events.len());
    for (index, raw) in raw_events.into_iter().enumerate() {
        check_size(index, raw, limits)?;
        let wire: WireEventGridEvent = serde_json::from_str(raw.get()).map_err(|e| {
            PublishError::InvalidJson(format!(
                "event [{index}] is not a JSON object of Event Grid fields: {e}"
            ))
        })?;
        let id = non_empty(index, "id", required_string(index, "id", wire.id)?)?;
        let subject = required_string(index, "subject", wire.subject)?;
        let event_type = non_empty(
            index,
            "eventType",
            required_string(index, "eventType", wire.event_type)?,
        )?;
        let event_time = required_string(index, "eventTime", wire.event_time)?;
        let event_time = format_event_time(normalise_time(index, "eventTime", &event_time)?);
        if let Some(given) = optional_string(index, "topic", wire.topic)?
            && !given.eq_ignore_ascii_case(topic)
        {
            return Err(PublishError::field(
                index,
                "topic",
                format!("must be omitted or equal this topic's resource path `{topic}`, got `{given}`"),
            ));
        }
        if let Some(version) = optional_string(index, "metadataVersion", wire.metadata_version)?
            && version != METADATA_VERSION
        {
            return Err(PublishError::field(
                index,
                "metadataVersion",
                format!("must be omitted or \"{METADATA_VERSION}\", got \"{version}\""),
            ));
        }
        let data_version = optional_string(index, "dataVersion", wire.data_version)?.unwrap_or_default();
        let data = match wire.data {
            Some(data) => data.to_owned(),
            None => RawValue::from_string("null".to_owned()).expect("`null` is valid JSON"),
        };
        events.push(EventGridEvent {
            topic: topic.to_owned(),
            subject,
            event_type,
            event_time,
            id,
            data,
            data_version,
            metadata_version: METADATA_VERSION.to_owned(),
            sequence: None,
            etag: None,
        });
    }
    Ok(events)
}

/// How CloudEvents arrive: one event (`application/cloudevents+json`) or an array
/// (`application/cloudevents-batch+json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudEventsMode {
    Structured,
    Batch,
}

/// Parses and validates CloudEvents 1.0 in the JSON format.
pub fn parse_cloud_events(
    body: &[u8],
    mode: CloudEventsMode,
    limits: PublishLimits,
) -> Result<Vec<CloudEvent>, PublishError> {
    let raw_events = match mode {
        CloudEventsMode::Batch => split_array(body, "CloudEvents")?,
        CloudEventsMode::Structured => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first != Some(&b'{') {
                return Err(PublishError::InvalidJson(
                    "an application/cloudevents+json body must be one JSON object; send arrays \
                     as application/cloudevents-batch+json"
                        .to_owned(),
                ));
            }
            vec![
                serde_json::from_slice(body)
                    .map_err(|e| PublishError::InvalidJson(format!("the request body is not valid JSON: {e}")))?,
            ]
        }
    };
    raw_events
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            check_size(index, raw, limits)?;
            let map: Map<String, Value> = serde_json::from_str(raw.get())
                .map_err(|e| PublishError::InvalidJson(format!("event [{index}] is not a JSON object: {e}")))?;
            cloud_event_from_map(index, map)
        })
        .collect()
}

fn cloud_event_from_map(index: usize, mut map: Map<String, Value>) -> Result<CloudEvent, PublishError> {
    let mut take = |name: &str| map.remove(name);
    let specversion = required_string(index, "specversion", take("specversion"))?;
    if specversion != SPEC_VERSION {
        return Err(PublishError::field(
            index,
            "specversion",
            format!("must be \"{SPEC_VERSION}\", got \"{specversion}\""),
        ));
    }
    let id = non_empty(index, "id", required_string(index, "id", take("id"))?)?;
    let source = non_empty(index, "source", required_string(index, "source", take("source"))?)?;
    let event_type = non_empty(index, "type", required_string(index, "type", take("type"))?)?;
    let subject = optional_string(index, "subject", take("subject"))?
        .map(|s| non_empty(index, "subject", s))
        .transpose()?;
    let time = optional_string(index, "time", take("time"))?;
    if let Some(time) = &time {
        normalise_time(index, "time", time)?;
    }
    let datacontenttype = optional_string(index, "datacontenttype", take("datacontenttype"))?;
    let dataschema = optional_string(index, "dataschema", take("dataschema"))?
        .map(|s| non_empty(index, "dataschema", s))
        .transpose()?;
    let data = take("data");
    let data_base64 = optional_string(index, "data_base64", take("data_base64"))?;
    if data.is_some() && data_base64.is_some() {
        return Err(PublishError::field(
            index,
            "data_base64",
            "must not be given together with `data`; send one of them",
        ));
    }
    for (name, value) in &map {
        let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid_name {
            return Err(PublishError::field(
                index,
                name,
                "is not a valid CloudEvents extension attribute name; use lower-case letters \
                 and digits only",
            ));
        }
        if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(PublishError::field(
                index,
                name,
                format!(
                    "extension attributes must be strings, numbers or booleans, got {}",
                    describe(value)
                ),
            ));
        }
    }
    Ok(CloudEvent {
        specversion,
        id,
        source,
        event_type,
        subject,
        time,
        datacontenttype,
        dataschema,
        data,
        data_base64,
        extensions: map.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t1";

    fn eg(body: &str) -> Result<Vec<EventGridEvent>, PublishError> {
        parse_event_grid_events(body.as_bytes(), TOPIC, PublishLimits::default())
    }

    fn field_error(err: PublishError) -> (usize, String, String) {
        match err {
            PublishError::InvalidField { index, field, problem } => (index, field, problem),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    const GOOD: &str =
        r#"{"id":"1","subject":"a/b","eventType":"T","eventTime":"2026-11-26T17:00:00.5+01:00","data":{"k":[1,2]}}"#;

    #[test]
    fn event_grid_events_get_topic_metadata_and_normalised_time() {
        let events = eg(&format!("[{GOOD}]")).unwrap();
        let e = &events[0];
        assert_eq!(e.topic, TOPIC);
        assert_eq!(e.metadata_version, "1");
        assert_eq!(e.data_version, "");
        assert_eq!(e.event_time, "2026-11-26T16:00:00.5000000Z");
        assert_eq!(e.data.get(), r#"{"k":[1,2]}"#);
    }

    #[test]
    fn missing_data_is_null_and_matching_topic_is_accepted_in_any_case() {
        let body = format!(
            r#"[{{"id":"1","subject":"","eventType":"T","eventTime":"2026-11-26T16:00:00Z","topic":"{}","metadataVersion":"1","dataVersion":"v2"}}]"#,
            TOPIC.to_uppercase()
        );
        let e = &eg(&body).unwrap()[0];
        assert_eq!(e.data.get(), "null");
        assert_eq!(e.data_version, "v2");
    }

    #[test]
    fn errors_name_the_event_and_the_field() {
        let cases = [
            (
                r#"{"subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z"}"#,
                "id",
                "required",
            ),
            (
                r#"{"id":"","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z"}"#,
                "id",
                "empty",
            ),
            (
                r#"{"id":"1","subject":5,"eventType":"T","eventTime":"2026-11-26T16:00:00Z"}"#,
                "subject",
                "must be a string, got a number",
            ),
            (
                r#"{"id":"1","subject":"s","eventTime":"2026-11-26T16:00:00Z"}"#,
                "eventType",
                "required",
            ),
            (
                r#"{"id":"1","subject":"s","eventType":"T","eventTime":"yesterday"}"#,
                "eventTime",
                "RFC 3339",
            ),
            (r#"{"id":"1","subject":"s","eventType":"T"}"#, "eventTime", "required"),
            (
                r#"{"id":"1","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","topic":"/other"}"#,
                "topic",
                "resource path",
            ),
            (
                r#"{"id":"1","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","metadataVersion":"2"}"#,
                "metadataVersion",
                "\"1\"",
            ),
            (
                r#"{"id":"1","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","dataVersion":1}"#,
                "dataVersion",
                "string",
            ),
        ];
        for (event, field, needle) in cases {
            let (index, got_field, problem) = field_error(eg(&format!("[{GOOD},{event}]")).unwrap_err());
            assert_eq!(index, 1, "{event}");
            assert_eq!(got_field, field, "{event}");
            assert!(problem.contains(needle), "{problem} should mention {needle}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused_with_advice() {
        let not_array = eg(GOOD).unwrap_err();
        assert_eq!(not_array.code(), "InputJsonInvalid");
        assert!(not_array.to_string().contains("wrap a single event"));
        assert!(eg("[{").unwrap_err().to_string().contains("not valid JSON"));
        assert_eq!(eg(" [ ] ").unwrap_err(), PublishError::Empty);
        assert!(eg("[1]").unwrap_err().to_string().contains("event [0]"));
    }

    #[test]
    fn oversize_events_are_refused_by_index() {
        let limits = PublishLimits { max_event_bytes: 200 };
        let big = format!(
            r#"{{"id":"2","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","data":"{}"}}"#,
            "x".repeat(200)
        );
        let err = parse_event_grid_events(format!("[{GOOD},{big}]").as_bytes(), TOPIC, limits).unwrap_err();
        assert!(
            matches!(
                err,
                PublishError::EventTooLarge {
                    index: 1,
                    limit: 200,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    fn ce(body: &str, mode: CloudEventsMode) -> Result<Vec<CloudEvent>, PublishError> {
        parse_cloud_events(body.as_bytes(), mode, PublishLimits::default())
    }

    const CE: &str = r#"{"specversion":"1.0","id":"a","source":"/app","type":"com.example.created","subject":"x","time":"2026-11-26T16:00:00Z","data":{"n":1},"traceparent":"00-abc","sequence":7}"#;

    #[test]
    fn cloud_events_structured_and_batch() {
        let one = ce(CE, CloudEventsMode::Structured).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].extensions["sequence"], 7);
        let batch = ce(&format!("[{CE},{CE}]"), CloudEventsMode::Batch).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1], one[0]);
        assert!(ce(&format!("[{CE}]"), CloudEventsMode::Structured).is_err());
        assert!(ce(CE, CloudEventsMode::Batch).is_err());
    }

    #[test]
    fn cloud_event_errors_name_the_attribute() {
        let cases = [
            (r#"{"id":"a","source":"/s","type":"t"}"#, "specversion", "required"),
            (
                r#"{"specversion":"0.3","id":"a","source":"/s","type":"t"}"#,
                "specversion",
                "\"1.0\"",
            ),
            (r#"{"specversion":"1.0","source":"/s","type":"t"}"#, "id", "required"),
            (r#"{"specversion":"1.0","id":"a","type":"t"}"#, "source", "required"),
            (r#"{"specversion":"1.0","id":"a","source":"/s"}"#, "type", "required"),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","subject":""}"#,
                "subject",
                "empty",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","time":"soon"}"#,
                "time",
                "RFC 3339",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#,
                "data_base64",
                "together",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","Bad-Name":"x"}"#,
                "Bad-Name",
                "lower-case",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","ext":{"a":1}}"#,
                "ext",
                "an object",
            ),
        ];
        for (event, field, needle) in cases {
            let (index, got_field, problem) =
                field_error(ce(&format!("[{CE},{event}]"), CloudEventsMode::Batch).unwrap_err());
            assert_eq!((index, got_field.as_str()), (1, field), "{event}");
            assert!(problem.contains(needle), "{problem} should mention {needle}");
        }
    }
}
