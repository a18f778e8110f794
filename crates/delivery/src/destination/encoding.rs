//! The events of a batch as their subscription wants them: in its delivery schema,
//! converted from the schema they were published in when the two differ.

use mlgrid_core::time::format_event_time;
use mlgrid_core::{CloudEvent, EventGridEvent, EventSchema};
use mlgrid_store::DueDelivery;

/// The request body for a batch in the subscription's delivery schema: a JSON array.
pub(crate) fn batch_body(batch: &[DueDelivery], target: EventSchema, topic: &str) -> Result<String, serde_json::Error> {
    let mut items = Vec::with_capacity(batch.len());
    for delivery in batch {
        let item = match (delivery.schema, target) {
            (stored, wanted) if stored == wanted => delivery.body.clone(),
            (EventSchema::EventGridSchema, _) => {
                let event: EventGridEvent = serde_json::from_str(&delivery.body)?;
                serde_json::to_string(&event.to_cloud_event())?
            }
            (EventSchema::CloudEventSchemaV1_0, _) => {
                let event: CloudEvent = serde_json::from_str(&delivery.body)?;
                serde_json::to_string(&event.to_event_grid(topic, &format_event_time(delivery.published_at)))?
            }
        };
        items.push(item);
    }
    Ok(format!("[{}]", items.join(",")))
}

/// Event Grid's `Content-Type` for deliveries in each schema.
pub(crate) fn content_type(schema: EventSchema) -> &'static str {
    match schema {
        EventSchema::EventGridSchema => "application/json",
        EventSchema::CloudEventSchemaV1_0 => "application/cloudevents-batch+json; charset=utf-8",
    }
}

/// The `dataVersion` of an Event Grid event, for `aeg-data-version`, without parsing the
/// rest of it.
pub(crate) fn data_version(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct DataVersion<'a> {
        #[serde(rename = "dataVersion", borrow, default)]
        data_version: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<DataVersion>(body)
        .map(|v| v.data_version.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mlgrid_core::EventSchema;
    use mlgrid_store::{DueDelivery, SubscriptionId};

    use super::*;

    fn delivery(schema: EventSchema, body: &str) -> DueDelivery {
        DueDelivery {
            subscription_id: SubscriptionId(1),
            sequence: 1,
            attempts: 0,
            schema,
            published_at: Utc::now(),
            body: body.into(),
        }
    }

    #[test]
    fn the_data_version_is_read_alone() {
        let event = r#"{"id":"1","data":{"nested":{"dataVersion":"no"}},"dataVersion":"2.0","subject":"s"}"#;
        assert_eq!(data_version(event), "2.0");
        assert_eq!(data_version(r#"{"dataVersion":"a\"b"}"#), "a\"b");
        assert_eq!(data_version(r#"{"id":"1"}"#), "");
        assert_eq!(data_version("not json"), "");
    }

    #[test]
    fn a_batch_is_a_json_array_in_the_subscriptions_schema() {
        let eg = r#"{"id":"1","topic":"/t","subject":"s","eventType":"T","eventTime":"2026-01-01T00:00:00Z","data":{"a":1},"dataVersion":"1"}"#;
        let same = batch_body(
            &[delivery(EventSchema::EventGridSchema, eg)],
            EventSchema::EventGridSchema,
            "/t",
        )
        .unwrap();
        assert_eq!(same, format!("[{eg}]"));
        let converted = batch_body(
            &[delivery(EventSchema::EventGridSchema, eg)],
            EventSchema::CloudEventSchemaV1_0,
            "/t",
        )
        .unwrap();
        let items: serde_json::Value = serde_json::from_str(&converted).unwrap();
        assert_eq!(items[0]["type"], "T");
        assert_eq!(items[0]["specversion"], "1.0");
        assert!(
            batch_body(
                &[delivery(EventSchema::EventGridSchema, "not json")],
                EventSchema::CloudEventSchemaV1_0,
                "/t"
            )
            .is_err()
        );
    }
}
