//! Event Grid's endpoint validation handshake, as pure rules: what is sent, and what an
//! answer means.
//!
//! A webhook subscription receives nothing until its endpoint proved it wants the
//! events. For the Event Grid schema the endpoint gets a
//! `Microsoft.EventGrid.SubscriptionValidationEvent` and either echoes its
//! `validationCode` as `{"validationResponse": code}` (synchronous) or GETs its
//! `validationUrl` within [`VALIDATION_WINDOW_MINUTES`] (manual). For CloudEvents the
//! endpoint answers an `OPTIONS` request with `WebHook-Allowed-Origin` (the CloudEvents
//! webhook abuse protection), or calls `WebHook-Request-Callback` later.

use serde::Deserialize;
use serde_json::json;

/// How long a manual validation (a GET of the validation URL) may take.
pub const VALIDATION_WINDOW_MINUTES: i64 = 5;

/// The event type of the handshake event.
pub const VALIDATION_EVENT_TYPE: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// The origin a CloudEvents endpoint is asked to allow. Event Grid's own, so that
/// receivers written for Azure (which check it) work unchanged.
pub const WEBHOOK_REQUEST_ORIGIN: &str = "eventgrid.azure.net";

/// What the handshake of a subscription's endpoint came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The endpoint proved it wants the events.
    Validated,
    /// The endpoint acknowledged without proof: it may still validate through the URL.
    AwaitingManualAction,
    /// The endpoint refused, failed or answered wrongly; why.
    Failed(String),
}

/// The request body of the handshake for the Event Grid schema: a JSON array holding
/// one `SubscriptionValidationEvent`.
pub fn validation_event(topic: &str, id: &str, code: &str, url: &str, event_time: &str) -> String {
    json!([{
        "id": id,
        "topic": topic,
        "subject": "",
        "data": {"validationCode": code, "validationUrl": url},
        "eventType": VALIDATION_EVENT_TYPE,
        "eventTime": event_time,
        "metadataVersion": "1",
        "dataVersion": "1",
    }])
    .to_string()
}

#[derive(Deserialize)]
struct ValidationResponse {
    #[serde(rename = "validationResponse")]
    validation_response: Option<serde_json::Value>,
}

/// Reads the answer to a validation event: a 2xx echoing the code validates; a 2xx
/// without `validationResponse` leaves the manual way open; anything else fails.
pub fn judge_validation_answer(status: u16, body: &str, code: &str) -> Handshake {
    if !(200..300).contains(&status) {
        return Handshake::Failed(format!("the endpoint answered the validation event with HTTP {status}"));
    }
    let answer = serde_json::from_str::<ValidationResponse>(body)
        .ok()
        .and_then(|r| r.validation_response);
    match answer {
        None => Handshake::AwaitingManualAction,
        Some(serde_json::Value::String(answer)) if answer == code => Handshake::Validated,
        Some(other) => Handshake::Failed(format!(
            "the endpoint answered validationResponse {other}, not the validationCode it was sent"
        )),
    }
}

/// Reads the answer to the CloudEvents `OPTIONS` handshake: 2xx with
/// `WebHook-Allowed-Origin` naming our origin (or `*`) validates; 2xx without it leaves
/// the callback open; anything else fails.
pub fn judge_options_answer(status: u16, allowed_origin: Option<&str>) -> Handshake {
    if !(200..300).contains(&status) {
        return Handshake::Failed(format!(
            "the endpoint answered the OPTIONS handshake with HTTP {status}"
        ));
    }
    match allowed_origin.map(str::trim) {
        None => Handshake::AwaitingManualAction,
        Some(origin) if origin == "*" || origin.eq_ignore_ascii_case(WEBHOOK_REQUEST_ORIGIN) => Handshake::Validated,
        Some(origin) => Handshake::Failed(format!(
            "the endpoint allowed origin `{origin}`, not `{WEBHOOK_REQUEST_ORIGIN}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_event_has_event_grids_shape() {
        let body = validation_event(
            "/t",
            "id-1",
            "code-1",
            "https://h/validate",
            "2026-11-26T00:00:00.0000000Z",
        );
        let events: serde_json::Value = serde_json::from_str(&body).unwrap();
        let event = &events[0];
        assert_eq!(event["eventType"], VALIDATION_EVENT_TYPE);
        assert_eq!(event["data"]["validationCode"], "code-1");
        assert_eq!(event["data"]["validationUrl"], "https://h/validate");
        assert_eq!(event["subject"], "");
        assert_eq!(
            (event["metadataVersion"].as_str(), event["dataVersion"].as_str()),
            (Some("1"), Some("1"))
        );
        let parsed: crate::EventGridEvent = serde_json::from_value(event.clone()).unwrap();
        assert_eq!(parsed.id, "id-1");
    }

    #[test]
    fn validation_answers_are_judged() {
        let code = "c0de";
        assert_eq!(
            judge_validation_answer(200, r#"{"validationResponse":"c0de"}"#, code),
            Handshake::Validated
        );
        assert_eq!(judge_validation_answer(200, "", code), Handshake::AwaitingManualAction);
        assert_eq!(
            judge_validation_answer(202, "{}", code),
            Handshake::AwaitingManualAction
        );
        let wrong = judge_validation_answer(200, r#"{"validationResponse":"other"}"#, code);
        assert!(matches!(wrong, Handshake::Failed(m) if m.contains("\"other\"")));
        let refused = judge_validation_answer(404, r#"{"validationResponse":"c0de"}"#, code);
        assert!(matches!(refused, Handshake::Failed(m) if m.contains("404")));
    }

    #[test]
    fn options_answers_are_judged() {
        assert_eq!(
            judge_options_answer(200, Some("eventgrid.azure.net")),
            Handshake::Validated
        );
        assert_eq!(judge_options_answer(200, Some("*")), Handshake::Validated);
        assert_eq!(judge_options_answer(204, None), Handshake::AwaitingManualAction);
        assert!(matches!(
            judge_options_answer(200, Some("evil.example")),
            Handshake::Failed(_)
        ));
        assert!(matches!(judge_options_answer(405, Some("*")), Handshake::Failed(m) if m.contains("405")));
    }
}
