//! Validation of what publishers send: Event Grid event arrays and CloudEvents.
//!
//! The rules are Event Grid's. An Event Grid event needs `id`, `subject`, `eventType`
//! and `eventTime`; `topic`, if given, must be the topic's resource path; `metadataVersion`,
//! if given, must be `"1"`; `dataVersion` defaults to the empty string. A CloudEvent needs
//! `specversion` `"1.0"`, `id`, `source` and `type`. Each event is at most
//! [`PublishLimits::max_event_bytes`] of JSON. A request is accepted whole or not at all,
//! and an error names the event (by its index in the request) and the field.
//!
//! Every field is read with the parser that reads stored events later (serde_json's, into
//! a tree), so an accepted event can always be routed and delivered: a field may nest at
//! most [`MAX_NESTING_DEPTH`] levels of arrays and objects, and every number in it must
//! be a finite 64-bit float (`1e999` is refused). A CloudEvent's `data_base64` must be
//! base64 (RFC 4648, with padding).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::cloud_event::{CloudEvent, SPEC_VERSION};
use crate::event_grid::{EventGridEvent, METADATA_VERSION};
use crate::time::{format_event_time, parse_rfc3339};

/// How many levels of arrays and objects one field of a published event (`data`, an
/// extension attribute) may nest: `[[1]]` nests two. Stored events are read back with
/// serde_json, which refuses more than 128 levels in all; 64 leaves room for the envelope
/// and for whatever wraps an event on its way out.
pub const MAX_NESTING_DEPTH: usize = 64;

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

/// Walks JSON with serde_json's own parser without building a tree, refusing more than
/// `remaining` levels of nesting. `too_deep` tells that refusal from serde_json's.
#[derive(Clone, Copy)]
struct Walk<'c> {
    remaining: usize,
    too_deep: &'c Cell<bool>,
}

impl<'c> Walk<'c> {
    fn deeper<E: serde::de::Error>(self) -> Result<Self, E> {
        match self.remaining.checked_sub(1) {
            Some(remaining) => Ok(Walk {
                remaining,
                too_deep: self.too_deep,
            }),
            None => {
                self.too_deep.set(true);
                Err(E::custom("nested too deep"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Checks that one field's JSON can be read back by every reader of stored events: at
/// most [`MAX_NESTING_DEPTH`] levels, finite numbers, strings serde_json accepts.
fn check_readable(index: usize, field: &str, raw: &RawValue) -> Result<(), PublishError> {
    let text = raw.get();
    let too_deep = Cell::new(false);
    let walk = Walk {
        remaining: MAX_NESTING_DEPTH,
        too_deep: &too_deep,
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let Err(error) = walk.deserialize(&mut deserializer) else {
        return Ok(());
    };
    let problem = if too_deep.get() {
        format!("nests deeper than {MAX_NESTING_DEPTH} levels of arrays and objects; flatten it")
    } else if let Some(number) = error
        .to_string()
        .starts_with("number out of range")
        .then(|| number_ending_at(text, error.line(), error.column()))
        .flatten()
    {
        format!(
            "holds the number {number}, which is out of range for a JSON number (a 64-bit float); \
             send it as a string"
        )
    } else {
        format!("holds JSON that cannot be read back ({error}); fix that value")
    };
    Err(PublishError::field(index, field, problem))
}

/// The number token whose last character serde_json reported at `line`:`column` (both
/// from 1), shortened if long.
fn number_ending_at(text: &str, line: usize, column: usize) -> Option<String> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let end = line_start.checked_add(column)?;
    let before = text.get(..end)?;
    let start = before
        .rfind(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
        .map_or(0, |i| i + 1);
    let number = &before[start..];
    const SHOWN: usize = 40;
    match number.len() {
        0 => None,
        len if len <= SHOWN => Some(number.to_owned()),
        len => Some(format!("{}... ({len} characters)", &number[..SHOWN])),
    }
}

/// Reads one field with the same parser and limits as stored events are read.
fn readable_value(index: usize, field: &str, raw: &RawValue) -> Result<Value, PublishError> {
    check_readable(index, field, raw)?;
    serde_json::from_str(raw.get())
        .map_err(|e| PublishError::field(index, field, format!("holds JSON that cannot be read back ({e})")))
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
    #[serde(borrow)]
    topic: Option<&'a RawValue>,
    #[serde(borrow)]
    subject: Option<&'a RawValue>,
    #[serde(borrow)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow)]
    event_time: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    data_version: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata_version: Option<&'a RawValue>,
}

impl<'a> WireEventGridEvent<'a> {
    /// Reads an envelope field (a string, if well formed) as a JSON value.
    fn field(index: usize, name: &str, raw: Option<&'a RawValue>) -> Result<Option<Value>, PublishError> {
        raw.map(|raw| readable_value(index, name, raw)).transpose()
    }
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
        let field = |name: &str, raw| WireEventGridEvent::field(index, name, raw);
        let id = non_empty(index, "id", required_string(index, "id", field("id", wire.id)?)?)?;
        let subject = required_string(index, "subject", field("subject", wire.subject)?)?;
        let event_type = non_empty(
            index,
            "eventType",
            required_string(index, "eventType", field("eventType", wire.event_type)?)?,
        )?;
        let event_time = required_string(index, "eventTime", field("eventTime", wire.event_time)?)?;
        let event_time = format_event_time(normalise_time(index, "eventTime", &event_time)?);
        if let Some(given) = optional_string(index, "topic", field("topic", wire.topic)?)?
            && !given.eq_ignore_ascii_case(topic)
        {
            return Err(PublishError::field(
                index,
                "topic",
                format!("must be omitted or equal this topic's resource path `{topic}`, got `{given}`"),
            ));
        }
        if let Some(version) = optional_string(
            index,
            "metadataVersion",
            field("metadataVersion", wire.metadata_version)?,
        )? && version != METADATA_VERSION
        {
            return Err(PublishError::field(
                index,
                "metadataVersion",
                format!("must be omitted or \"{METADATA_VERSION}\", got \"{version}\""),
            ));
        }
        let data_version =
            optional_string(index, "dataVersion", field("dataVersion", wire.data_version)?)?.unwrap_or_default();
        let data = match wire.data {
            Some(data) => {
                check_readable(index, "data", data)?;
                data.to_owned()
            }
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
            let raw_map: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get())
                .map_err(|e| PublishError::InvalidJson(format!("event [{index}] is not a JSON object: {e}")))?;
            let map = raw_map
                .into_iter()
                .map(|(name, raw)| readable_value(index, &name, raw).map(|value| (name, value)))
                .collect::<Result<Map<String, Value>, PublishError>>()?;
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
    if let Some(encoded) = &data_base64
        && let Err(error) = base64::engine::general_purpose::STANDARD.decode(encoded)
    {
        return Err(PublishError::field(
            index,
            "data_base64",
            format!(
                "is not base64 ({error}); encode the bytes with the standard alphabet \
                 (A-Z a-z 0-9 + /) and `=` padding, as RFC 4648 section 4 describes"
            ),
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
    use crate::Event;

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

    fn nested_arrays(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    fn nested_objects(levels: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels))
    }

    fn eg_with_data(data: &str) -> String {
        format!(
            r#"[{GOOD},{{"id":"2","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","data":{data}}}]"#
        )
    }

    fn ce_with_data(data: &str) -> String {
        format!(r#"{{"specversion":"1.0","id":"b","source":"/app","type":"t","data":{data}}}"#)
    }

    /// One way of publishing: its name, what it came to, the index errors must name.
    type Outcome = (&'static str, Result<Vec<Event>, PublishError>, usize);

    /// Every way an event can arrive, with `data` in its second event (the first, in a
    /// structured CloudEvents request), and the index the error must name.
    fn every_format(data: &str) -> Vec<Outcome> {
        let ce_one = ce_with_data(data);
        vec![
            (
                "Event Grid",
                eg(&eg_with_data(data)).map(|events| events.into_iter().map(Event::EventGrid).collect()),
                1,
            ),
            (
                "CloudEvents structured",
                ce(&ce_one, CloudEventsMode::Structured).map(|events| events.into_iter().map(Event::Cloud).collect()),
                0,
            ),
            (
                "CloudEvents batch",
                ce(&format!("[{CE},{ce_one}]"), CloudEventsMode::Batch)
                    .map(|events| events.into_iter().map(Event::Cloud).collect()),
                1,
            ),
        ]
    }

    #[test]
    fn data_nested_exactly_to_the_limit_is_accepted_and_reads_back_as_stored() {
        for data in [nested_arrays(MAX_NESTING_DEPTH), nested_objects(MAX_NESTING_DEPTH)] {
            for (format, result, _) in every_format(&data) {
                let events = result.unwrap_or_else(|e| panic!("{format}: {e}"));
                for event in events {
                    // What the store keeps, read the way the fan-out and delivery read it.
                    let stored = event.to_json();
                    let tree: Value = serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{format}: {e}"));
                    assert!(tree.is_object(), "{format}");
                    Event::from_json(event.schema(), &stored).unwrap_or_else(|e| panic!("{format}: {e}"));
                }
            }
        }
    }

    #[test]
    fn data_nested_deeper_than_the_limit_is_refused_naming_the_event() {
        // 127 levels used to be accepted and then never routed (serde_json reads 128).
        for levels in [MAX_NESTING_DEPTH + 1, 127, 128, 10_000] {
            for data in [nested_arrays(levels), nested_objects(levels)] {
                for (format, result, at) in every_format(&data) {
                    let error = result.expect_err(format);
                    let (index, field, problem) = field_error(error.clone());
                    assert_eq!((index, field.as_str()), (at, "data"), "{format} {levels}");
                    assert_eq!(
                        error.to_string(),
                        format!(
                            "event [{at}], field `data`: nests deeper than 64 levels of arrays and objects; flatten it"
                        ),
                        "{format} {levels}: {problem}"
                    );
                }
            }
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused_naming_the_number() {
        for (data, number) in [
            ("1e999", "1e999"),
            ("-1e999", "-1e999"),
            ("{\"a\":\n  [1, 2.5E+400]}", "2.5E+400"),
        ] {
            for (format, result, at) in every_format(data) {
                let error = result.expect_err(format).to_string();
                assert_eq!(
                    error,
                    format!(
                        "event [{at}], field `data`: holds the number {number}, which is out of range for a \
                         JSON number (a 64-bit float); send it as a string"
                    ),
                    "{format}"
                );
            }
        }
        let long = format!("1{}", "0".repeat(400));
        for (format, result, _) in every_format(&long) {
            let error = result.expect_err(format).to_string();
            assert!(error.contains("(401 characters)"), "{format}: {error}");
        }
        // Tiny numbers and long integers are floats serde_json reads: accepted.
        for data in ["1e-999", "0e99999", "123456789012345678901234567890"] {
            for (format, result, _) in every_format(data) {
                result.unwrap_or_else(|e| panic!("{format} {data}: {e}"));
            }
        }
    }

    #[test]
    fn every_field_is_read_as_stored_events_are() {
        // A lone surrogate is kept by a raw scan but refused by serde_json's tree.
        for (format, result, at) in every_format(r#""\ud800""#) {
            let (index, field, problem) = field_error(result.expect_err(format));
            assert_eq!((index, field.as_str()), (at, "data"), "{format}");
            assert!(problem.contains("cannot be read back"), "{format}: {problem}");
        }
        let deep_subject = format!(
            r#"[{{"id":"1","subject":{},"eventType":"T","eventTime":"2026-11-26T16:00:00Z"}}]"#,
            nested_arrays(200)
        );
        let (_, field, problem) = field_error(eg(&deep_subject).unwrap_err());
        assert_eq!(field, "subject");
        assert!(problem.contains("nests deeper"), "{problem}");
        let big_extension = r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","weight":1e999}"#;
        let (_, field, problem) = field_error(ce(big_extension, CloudEventsMode::Structured).unwrap_err());
        assert_eq!(field, "weight");
        assert!(problem.contains("1e999"), "{problem}");
    }

    #[test]
    fn data_base64_must_be_base64_with_padding() {
        let with = |encoded: &str| {
            ce(
                &format!(
                    r#"[{CE},{{"specversion":"1.0","id":"b","source":"/s","type":"t","data_base64":"{encoded}"}}]"#
                ),
                CloudEventsMode::Batch,
            )
        };
        for good in ["", "AA==", "aGVsbG8gd29ybGQ=", "+/+/"] {
            let events = with(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(events[1].data_base64.as_deref(), Some(good));
        }
        for bad in ["AA", "A===", "not base64!", "aGVsbG8_", "AB=="] {
            let (index, field, problem) = field_error(with(bad).unwrap_err());
            assert_eq!((index, field.as_str()), (1, "data_base64"), "{bad}");
            assert!(
                problem.starts_with("is not base64 (") && problem.contains("RFC 4648"),
                "{bad}: {problem}"
            );
        }
    }
}
