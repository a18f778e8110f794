//! A webhook receiver for end-to-end tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A receiver on a loopback port, in its own thread: answers the validation handshake
/// and counts how often each event id arrives.
pub struct Receiver {
    pub url: String,
    pub seen: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let log = seen.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(move |body: String| {
                        let log = log.clone();
                        async move {
                            let events: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                            if events[0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent" {
                                return json!({"validationResponse": events[0]["data"]["validationCode"]}).to_string();
                            }
                            let mut seen = log.lock().unwrap();
                            for event in events.as_array().into_iter().flatten() {
                                *seen
                                    .entry(event["id"].as_str().unwrap_or_default().to_owned())
                                    .or_default() += 1;
                            }
                            String::new()
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Receiver { url, seen }
    }

    /// Distinct events received, and deliveries beyond the first of each.
    pub fn counts(&self) -> (usize, u32) {
        let seen = self.seen.lock().unwrap();
        (seen.len(), seen.values().map(|n| n - 1).sum())
    }

    pub fn wait_for(&self, distinct: usize, within: Duration) {
        let started = Instant::now();
        while self.counts().0 < distinct {
            assert!(
                started.elapsed() < within,
                "only {:?} of {distinct} events arrived",
                self.counts()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
