//! The Event Grid schema envelope.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cloud_event::CloudEvent;

/// The only metadata version Event Grid has defined.
pub const METADATA_VERSION: &str = "1";

/// One event in the Event Grid schema, as stored and delivered.
///
/// `data` is kept as raw JSON text: the publish path validates and stores it without
/// building a tree, and consumers parse it into the type they expect with [`Self::data_as`].
/// Field order is Event Grid's, so serialised events read like the documentation's samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventGridEvent {
    pub topic: String,
    pub subject: String,
    pub event_type: String,
    pub event_time: String,
    pub id: String,
    #[serde(default = "null_data")]
    pub data: Box<RawValue>,
    #[serde(default)]
    pub data_version: String,
    #[serde(default = "metadata_version")]
    pub metadata_version: String,
    /// mlgrid's addition for consumers that order and de-duplicate: the position of this
    /// event among the events of its subject (1, 2, 3, ...). Set on events mlgrid raises;
    /// Event Grid clients ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// mlgrid's addition: the etag of the resource after the change that raised the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

fn null_data() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("`null` is valid JSON")
}

fn metadata_version() -> String {
    METADATA_VERSION.to_owned()
}

impl EventGridEvent {
    /// Builds an event whose data is any serialisable value.
    pub fn new(
        topic: impl Into<String>,
        subject: impl Into<String>,
        event_type: impl Into<String>,
        event_time: impl Into<String>,
        id: impl Into<String>,
        data: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(EventGridEvent {
            topic: topic.into(),
            subject: subject.into(),
            event_type: event_type.into(),
            event_time: event_time.into(),
            id: id.into(),
            data: serde_json::value::to_raw_value(data)?,
            data_version: String::new(),
            metadata_version: metadata_version(),
            sequence: None,
            etag: None,
        })
    }

    /// Parses `data` into `T`.
    pub fn data_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }

    /// The same event in the CloudEvents 1.0 schema.
    ///
    /// `topic` becomes `source`, `eventType` becomes `type`, `eventTime` becomes `time`;
    /// a non-empty `dataVersion` travels in the `dataversion` extension attribute so that
    /// [`CloudEvent::to_event_grid`] gives back the original event. The per-subject
    /// `sequence` becomes the CloudEvents `sequence` extension (a string, zero-padded to
    /// 20 digits so that it orders as text) and `etag` the `etag` extension.
    pub fn to_cloud_event(&self) -> CloudEvent {
        let mut event = CloudEvent::new(&self.id, &self.topic, &self.event_type);
        event.subject = Some(self.subject.clone());
        event.time = Some(self.event_time.clone());
        event.datacontenttype = Some("application/json".to_owned());
        event.data = serde_json::from_str(self.data.get()).ok();
        if !self.data_version.is_empty() {
            event.extensions.insert(
                crate::cloud_event::DATA_VERSION_EXTENSION.to_owned(),
                self.data_version.clone().into(),
            );
        }
        if let Some(sequence) = self.sequence {
            event.extensions.insert(
                crate::cloud_event::SEQUENCE_EXTENSION.to_owned(),
                crate::cloud_event::format_sequence(sequence).into(),
            );
        }
        if let Some(etag) = &self.etag {
            event
                .extensions
                .insert(crate::cloud_event::ETAG_EXTENSION.to_owned(), etag.clone().into());
        }
        event
    }
}
