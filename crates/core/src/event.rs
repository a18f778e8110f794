//! An accepted event in either schema, as the store keeps it.

use serde::{Deserialize, Serialize};

use crate::cloud_event::CloudEvent;
use crate::event_grid::EventGridEvent;

/// The schema an event was published in, and is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventSchema {
    EventGridSchema,
    #[serde(rename = "CloudEventSchemaV1_0")]
    CloudEventSchemaV1_0,
}

impl EventSchema {
    /// The stable name used in the REST API and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            EventSchema::EventGridSchema => "EventGridSchema",
            EventSchema::CloudEventSchemaV1_0 => "CloudEventSchemaV1_0",
        }
    }

    pub fn parse(s: &str) -> Option<EventSchema> {
        [EventSchema::EventGridSchema, EventSchema::CloudEventSchemaV1_0]
            .into_iter()
            .find(|schema| schema.as_str().eq_ignore_ascii_case(s))
    }
}

/// An event in the schema it was published in.
#[derive(Debug, Clone)]
pub enum Event {
    EventGrid(EventGridEvent),
    Cloud(CloudEvent),
}

impl Event {
    pub fn schema(&self) -> EventSchema {
        match self {
            Event::EventGrid(_) => EventSchema::EventGridSchema,
            Event::Cloud(_) => EventSchema::CloudEventSchemaV1_0,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Event::EventGrid(e) => &e.id,
            Event::Cloud(e) => &e.id,
        }
    }

    pub fn event_type(&self) -> &str {
        match self {
            Event::EventGrid(e) => &e.event_type,
            Event::Cloud(e) => &e.event_type,
        }
    }

    /// The subject; CloudEvents without one have the empty subject.
    pub fn subject(&self) -> &str {
        match self {
            Event::EventGrid(e) => &e.subject,
            Event::Cloud(e) => e.subject.as_deref().unwrap_or(""),
        }
    }

    /// The event as JSON in its own schema.
    pub fn to_json(&self) -> String {
        match self {
            Event::EventGrid(e) => serde_json::to_string(e),
            Event::Cloud(e) => serde_json::to_string(e),
        }
        .expect("events hold only JSON-representable values")
    }

    /// Reads back what [`Self::to_json`] wrote.
    pub fn from_json(schema: EventSchema, json: &str) -> Result<Event, serde_json::Error> {
        Ok(match schema {
            EventSchema::EventGridSchema => Event::EventGrid(serde_json::from_str(json)?),
            EventSchema::CloudEventSchemaV1_0 => Event::Cloud(serde_json::from_str(json)?),
        })
    }
}
