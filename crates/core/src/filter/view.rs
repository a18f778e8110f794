//! An event as filters see it, in either schema.

use std::borrow::Cow;

use serde_json::Value;

use super::fold;
use crate::event::EventSchema;

/// An event as filters see it: its type, its subject, and its JSON for advanced filters.
///
/// Built once per event and shared by every filter: the event type and subject are folded
/// to lower case here, so that no filter folds them again. `event` is the whole envelope
/// as stored: an Event Grid event (`eventType`, `subject`, `data`, ...) or a CloudEvent
/// (`type`, `subject`, `data`, extension attributes, ...). A missing or non-string type or
/// subject reads as the empty string, as a CloudEvent without a subject has.
#[derive(Debug, Clone)]
pub struct EventView<'a> {
    schema: EventSchema,
    json: &'a Value,
    event_type: &'a str,
    subject: &'a str,
    folded_event_type: Cow<'a, str>,
    folded_subject: Cow<'a, str>,
    /// The `data` attribute, looked up once: most keys start there.
    data: Option<&'a Value>,
}

impl<'a> EventView<'a> {
    pub fn new(schema: EventSchema, event: &'a Value) -> EventView<'a> {
        let type_attribute = match schema {
            EventSchema::EventGridSchema => "eventType",
            EventSchema::CloudEventSchemaV1_0 => "type",
        };
        let text = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or("");
        let (event_type, subject) = (text(type_attribute), text("subject"));
        EventView {
            schema,
            json: event,
            event_type,
            subject,
            folded_event_type: fold::fold(event_type),
            folded_subject: fold::fold(subject),
            data: event
                .as_object()
                .and_then(|object| super::compiled::property(object, "data", "data")),
        }
    }

    pub fn schema(&self) -> EventSchema {
        self.schema
    }

    /// `eventType` (Event Grid) or `type` (CloudEvents).
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    pub fn subject(&self) -> &'a str {
        self.subject
    }

    pub(crate) fn folded_event_type(&self) -> &str {
        &self.folded_event_type
    }

    pub(crate) fn folded_subject(&self) -> &str {
        &self.folded_subject
    }

    pub(crate) fn json(&self) -> &'a Value {
        self.json
    }

    pub(crate) fn data(&self) -> Option<&'a Value> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_type_and_subject_of_either_schema() {
        let event = json!({"eventType": "A.B", "subject": "X/y", "data": {}});
        let view = EventView::new(EventSchema::EventGridSchema, &event);
        assert_eq!((view.event_type(), view.subject()), ("A.B", "X/y"));
        assert_eq!((view.folded_event_type(), view.folded_subject()), ("a.b", "x/y"));

        let cloud = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "A.B"});
        let view = EventView::new(EventSchema::CloudEventSchemaV1_0, &cloud);
        assert_eq!((view.event_type(), view.subject()), ("A.B", ""));
        // The other schema's attribute is not read.
        assert_eq!(EventView::new(EventSchema::EventGridSchema, &cloud).event_type(), "");
    }
}
