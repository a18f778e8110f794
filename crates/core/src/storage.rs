//! Data-arrival events: what a datastore watch publishes for a file added or changed,
//! shaped like Azure Storage's `Microsoft.Storage.BlobCreated` so that subscriptions,
//! filters and consumers written for Azure's events work on them unchanged.
//!
//! The subject is Azure's, `/blobServices/default/containers/{container}/blobs/{blob}`,
//! and the data has Azure's fields (camelCase, `eTag` as Azure spells it). What mlgrid
//! cannot know as Azure does is filled in the nearest way: `api` is always `PutBlob`,
//! the request ids are fresh UUIDs the caller passes in (core draws no random numbers),
//! and the content type is guessed from the file's extension.
//!
//! ```
//! use mlgrid_core::storage::{BlobCreated, content_type_of, sequencer};
//!
//! let created = BlobCreated::new("raw", "in/a.csv", "https://acct.blob.core.windows.net/raw/in/a.csv")
//!     .with_content("\"0x1\"", 12, content_type_of("in/a.csv"))
//!     .with_ids("r-1", "c-1", "b-1", sequencer(7));
//! let event = created.to_event_grid("/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t", "e-1", "2026-12-02T00:00:00.0000000Z");
//! assert_eq!(event.subject, "/blobServices/default/containers/raw/blobs/in/a.csv");
//! assert_eq!(event.event_type, "Microsoft.Storage.BlobCreated");
//! ```

use serde::{Deserialize, Serialize};

use crate::EventGridEvent;

/// The event type of a blob created or replaced.
pub const BLOB_CREATED: &str = "Microsoft.Storage.BlobCreated";

/// A file that arrived, as a `BlobCreated` event tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobCreated {
    /// The container (Azure Blob), the bucket (S3, GCS), or the datastore's name (a
    /// folder on the server, which has no container).
    pub container: String,
    /// The blob's name in its container, `/`-separated.
    pub blob: String,
    pub data: BlobCreatedData,
}

/// Azure's data of a `BlobCreated` event, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobCreatedData {
    pub api: String,
    pub client_request_id: String,
    pub request_id: String,
    #[serde(rename = "eTag")]
    pub e_tag: String,
    pub content_type: String,
    pub content_length: u64,
    pub blob_type: String,
    pub url: String,
    /// Orders the events of one blob as text: see [`sequencer`].
    pub sequencer: String,
    pub storage_diagnostics: StorageDiagnostics,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageDiagnostics {
    pub batch_id: String,
}

impl BlobCreated {
    /// A block blob put whole (`PutBlob`) at `url`; content and ids still to fill in.
    pub fn new(container: &str, blob: &str, url: &str) -> BlobCreated {
        BlobCreated {
            container: container.to_owned(),
            blob: blob.to_owned(),
            data: BlobCreatedData {
                api: "PutBlob".to_owned(),
                client_request_id: String::new(),
                request_id: String::new(),
                e_tag: String::new(),
                content_type: String::new(),
                content_length: 0,
                blob_type: "BlockBlob".to_owned(),
                url: url.to_owned(),
                sequencer: String::new(),
                storage_diagnostics: StorageDiagnostics {
                    batch_id: String::new(),
                },
            },
        }
    }

    pub fn with_content(mut self, e_tag: &str, length: u64, content_type: &str) -> BlobCreated {
        self.data.e_tag = e_tag.to_owned();
        self.data.content_length = length;
        self.data.content_type = content_type.to_owned();
        self
    }

    pub fn with_ids(mut self, request_id: &str, client_request_id: &str, batch_id: &str, sequencer: String) -> Self {
        self.data.request_id = request_id.to_owned();
        self.data.client_request_id = client_request_id.to_owned();
        self.data.storage_diagnostics.batch_id = batch_id.to_owned();
        self.data.sequencer = sequencer;
        self
    }

    /// Azure's subject of a blob event.
    pub fn subject(&self) -> String {
        format!(
            "/blobServices/default/containers/{}/blobs/{}",
            self.container, self.blob
        )
    }

    /// The event in the Event Grid schema, on `topic` (the resource path of the custom
    /// topic it is published into): `dataVersion` empty and `metadataVersion` `1`, as
    /// Azure Storage sends them.
    pub fn to_event_grid(&self, topic: &str, id: &str, event_time: &str) -> EventGridEvent {
        EventGridEvent {
            topic: topic.to_owned(),
            subject: self.subject(),
            event_type: BLOB_CREATED.to_owned(),
            event_time: event_time.to_owned(),
            id: id.to_owned(),
            data: serde_json::value::to_raw_value(&self.data).expect("blob event data are strings and integers"),
            data_version: String::new(),
            metadata_version: crate::event_grid::METADATA_VERSION.to_owned(),
            sequence: None,
            etag: None,
        }
    }
}

/// A sequencer as Azure writes one: 32 hex digits, zero-padded, so that comparing two as
/// text orders them as the numbers they hold.
pub fn sequencer(value: u128) -> String {
    format!("{value:032x}")
}

/// The content type of a file, guessed from its extension (ignoring case); unknown ones
/// are `application/octet-stream`, as Azure stores a blob put without one.
pub fn content_type_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => extension.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match extension.as_str() {
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "txt" | "log" => "text/plain",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "html" | "htm" => "text/html",
        "md" => "text/markdown",
        "parquet" => "application/vnd.apache.parquet",
        "avro" => "application/avro",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_has_azures_field_names() {
        let created = BlobCreated::new("c", "a.csv", "u")
            .with_content("\"e\"", 3, "text/csv")
            .with_ids("r", "cr", "b", sequencer(255));
        let event = created.to_event_grid("t", "id", "2026-12-02T00:00:00.0000000Z");
        let data: serde_json::Value = serde_json::from_str(event.data.get()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({
                "api": "PutBlob", "clientRequestId": "cr", "requestId": "r", "eTag": "\"e\"",
                "contentType": "text/csv", "contentLength": 3, "blobType": "BlockBlob", "url": "u",
                "sequencer": "000000000000000000000000000000ff", "storageDiagnostics": {"batchId": "b"}
            })
        );
        assert_eq!(event.data_version, "");
        assert_eq!(event.metadata_version, "1");
    }

    #[test]
    fn sequencers_order_as_text_as_they_do_as_numbers() {
        assert!(sequencer(9) < sequencer(10));
        assert!(sequencer(0xff) < sequencer(0x100));
        assert_eq!(sequencer(u128::MAX).len(), 32);
    }

    #[test]
    fn content_types_come_from_the_extension() {
        assert_eq!(content_type_of("in/a.CSV"), "text/csv");
        assert_eq!(content_type_of("in/b.txt"), "text/plain");
        assert_eq!(content_type_of("in/.hidden"), "application/octet-stream");
        assert_eq!(content_type_of("in.d/noext"), "application/octet-stream");
        assert_eq!(content_type_of("x.unknown"), "application/octet-stream");
    }
}
