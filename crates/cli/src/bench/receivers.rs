//! The webhook receivers of the delivery benches: a local HTTP listener per
//! subscription taking its deliveries at `/hook/{subscription}`, answering the validation
//! handshake, and counting what arrives (latency, duplicates) in bounded memory, so that
//! a run of hours costs no more than a run of seconds.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::stats::Histogram;

/// Microseconds since the Unix epoch: what published events carry as `sentAtMicros`.
pub fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The body of a bench event, `n` numbering it within the run.
pub fn bench_event(n: u64) -> String {
    // Written out rather than built as JSON values: the publisher shares the machine with
    // the server it measures.
    format!(
        r#"{{"id":"{}","subject":"bench/{n}","eventType":"Mlgrid.Bench.Delivered","eventTime":"2026-11-26T16:00:00Z","dataVersion":"1.0","data":{{"n":{n},"sentAtMicros":{}}}}}"#,
        uuid::Uuid::new_v4(),
        micros_now()
    )
}

/// Which event numbers a subscription has received: one bit each.
#[derive(Default)]
struct Seen(Vec<u64>);

impl Seen {
    /// Whether `n` is new.
    fn insert(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }
}

/// What the receivers saw.
pub struct Received {
    seen: Vec<Mutex<Seen>>,
    /// Publish-to-receipt latency of every first delivery of an event, and of those since
    /// the last [`Received::take_window`].
    latencies: Mutex<(Histogram, Histogram)>,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
}

impl Received {
    /// Distinct (subscription, event) deliveries so far.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// The latencies of the whole run.
    pub fn latencies(&self) -> Histogram {
        self.latencies.lock().expect("never held across a panic").0.clone()
    }

    /// The latencies since the last call, starting a new window.
    pub fn take_window(&self) -> Histogram {
        std::mem::take(&mut self.latencies.lock().expect("never held across a panic").1)
    }
}

/// What a receiver reads of a delivered event: the bench's own data, or the validation
/// handshake's code.
#[derive(Deserialize)]
struct Delivered<'a> {
    #[serde(rename = "eventType", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    data: DeliveredData<'a>,
}

#[derive(Deserialize)]
struct DeliveredData<'a> {
    n: Option<u64>,
    #[serde(rename = "sentAtMicros")]
    sent_at_micros: Option<u64>,
    #[serde(rename = "validationCode", borrow)]
    validation_code: Option<Cow<'a, str>>,
}

/// Takes a delivery, or answers the validation handshake as a receiver should. Kept
/// lean: the receivers share the machine with the server they measure.
async fn receive(State(received): State<Arc<Received>>, Path(subscription): Path<usize>, body: Bytes) -> String {
    let now = micros_now();
    let Ok(events) = serde_json::from_slice::<Vec<Delivered>>(&body) else {
        return "bad".into();
    };
    if let Some(code) = events
        .first()
        .filter(|e| e.event_type == mlgrid_core::validation::VALIDATION_EVENT_TYPE)
        .and_then(|e| e.data.validation_code.as_deref())
    {
        return json!({ "validationResponse": code }).to_string();
    }
    let Some(seen) = received.seen.get(subscription) else {
        return "unknown subscription".into();
    };
    let mut latencies = Vec::with_capacity(events.len());
    {
        let mut seen = seen.lock().expect("never held across a panic");
        for event in &events {
            let (Some(n), Some(sent)) = (event.data.n, event.data.sent_at_micros) else {
                continue;
            };
            if seen.insert(n) {
                latencies.push(Duration::from_micros(now.saturating_sub(sent)));
            } else {
                received.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    received.deliveries.fetch_add(latencies.len() as u64, Ordering::Relaxed);
    let mut histograms = received.latencies.lock().expect("never held across a panic");
    for latency in latencies {
        histograms.0.record(latency);
        histograms.1.record(latency);
    }
    String::new()
}

/// Starts a receiver for each of `subscriptions` subscriptions, each on a free loopback
/// port of its own (a receiver is an endpoint of its own, as separate services are);
/// returns their URLs and what they see.
pub async fn start(subscriptions: usize) -> anyhow::Result<(Vec<String>, Arc<Received>)> {
    let received = Arc::new(Received {
        seen: (0..subscriptions).map(|_| Mutex::default()).collect(),
        latencies: Mutex::default(),
        deliveries: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/hook/{subscription}", post(receive))
        .with_state(received.clone());
    let mut urls = Vec::with_capacity(subscriptions);
    for s in 0..subscriptions {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!("http://{}/hook/{s}", listener.local_addr()?));
        let app = app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    Ok((urls, received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_number_is_new_once() {
        let mut seen = Seen::default();
        assert!(seen.insert(0));
        assert!(seen.insert(1000));
        assert!(!seen.insert(1000));
        assert!(!seen.insert(0));
        assert!(seen.insert(63) && seen.insert(64));
    }
}
