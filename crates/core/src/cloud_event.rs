//! The CloudEvents 1.0 envelope (JSON format).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event_grid::EventGridEvent;
use crate::time::{format_event_time, parse_rfc3339};

/// The CloudEvents specification version mlgrid reads and writes.
pub const SPEC_VERSION: &str = "1.0";

/// Extension attribute that carries an Event Grid `dataVersion` through CloudEvents.
pub const DATA_VERSION_EXTENSION: &str = "dataversion";

/// Extension attribute with the event's position among the events of its subject.
pub const SEQUENCE_EXTENSION: &str = "sequence";

/// Extension attribute with the resource's etag after the change.
pub const ETAG_EXTENSION: &str = "etag";

/// A sequence number as the CloudEvents `sequence` extension writes it: a string that
/// orders as text, so zero-padded to 20 digits (enough for any `u64`).
pub fn format_sequence(sequence: u64) -> String {
    format!("{sequence:020}")
}

/// One event in the CloudEvents 1.0 JSON format.
///
/// Extension attributes are kept in `extensions`; their values are strings, numbers or
/// booleans (validated on publish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
}

impl CloudEvent {
    /// An event with the required attributes only.
    pub fn new(id: &str, source: &str, event_type: &str) -> Self {
        CloudEvent {
            specversion: SPEC_VERSION.to_owned(),
            id: id.to_owned(),
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            data: None,
            data_base64: None,
            extensions: BTreeMap::new(),
        }
    }

    /// The same event in the Event Grid schema, as published to `topic`.
    ///
    /// `type` becomes `eventType`; a missing `subject` becomes the empty string; `time`
    /// is normalised to Event Grid's format, and `fallback_time` (usually the time the
    /// event was accepted) stands in when the event has none. `data_base64` is carried
    /// as a JSON string. The `dataversion` extension becomes `dataVersion`, a numeric
    /// `sequence` extension `sequence`, and the `etag` extension `etag`.
    pub fn to_event_grid(&self, topic: &str, fallback_time: &str) -> EventGridEvent {
        let event_time = self
            .time
            .as_deref()
            .and_then(|t| parse_rfc3339(t).ok())
            .map(format_event_time)
            .unwrap_or_else(|| fallback_time.to_owned());
        let data = match (&self.data, &self.data_base64) {
            (Some(data), _) => data.clone(),
            (None, Some(b64)) => Value::String(b64.clone()),
            (None, None) => Value::Null,
        };
        let data_version = match self.extensions.get(DATA_VERSION_EXTENSION) {
            Some(Value::String(v)) => v.clone(),
            _ => String::new(),
        };
        let mut event = EventGridEvent::new(
            topic,
            self.subject.clone().unwrap_or_default(),
            &self.event_type,
            event_time,
            &self.id,
            &data,
        )
        .expect("a JSON value always serialises");
        event.data_version = data_version;
        event.sequence = match self.extensions.get(SEQUENCE_EXTENSION) {
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        event.etag = match self.extensions.get(ETAG_EXTENSION) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        event
    }
}
