//! What the delivery tests share: receivers on loopback, and a store with a fan-out and
//! a dispatcher running on it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::retry::RetrySchedule;
use mlgrid_core::subscription::ProvisioningState;
use mlgrid_delivery::{AddressPolicy, Dispatcher, DispatcherConfig, Fanout, WebhookSecrets};
use mlgrid_store::{NewEvent, NewSource, SourceId, SqliteStore, Store, SubscriptionId, SubscriptionPut};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// What a receiver saw: each request's headers and JSON body.
pub type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A receiver on a free loopback port that answers with `answers` in turn (the last one
/// from then on).
pub async fn receiver(answers: Vec<StatusCode>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = serve(listener, answers, CancellationToken::new());
    (url, seen)
}

/// Answers on `listener` until `stop`, then closes it: connections are refused.
pub fn serve(listener: tokio::net::TcpListener, answers: Vec<StatusCode>, stop: CancellationToken) -> Seen {
    let (app, seen) = answering(answers);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap()
    });
    seen
}

/// A receiver's routes: `/hook` answers with `answers` in turn (the last one from then
/// on) and keeps what it was sent.
fn answering(answers: Vec<StatusCode>) -> (Router, Seen) {
    let seen: Seen = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/hook",
        post({
            let seen = seen.clone();
            move |headers: HeaderMap, body: String| {
                let (seen, count, answers) = (seen.clone(), count.clone(), answers.clone());
                async move {
                    seen.lock().await.push((headers, serde_json::from_str(&body).unwrap()));
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    answers[n.min(answers.len() - 1)]
                }
            }
        }),
    );
    (app, seen)
}

/// A receiver that answers 200 and can go down and come back on the same port. While it
/// is down it resets every connection at once, as a receiver that died would; its port
/// stays bound meanwhile, so no other process can take it. Every answer closes its
/// connection, so none from before a fall is still served after it.
pub struct Switchable {
    pub url: String,
    pub seen: Seen,
    up: Arc<AtomicBool>,
}

impl Switchable {
    pub async fn new() -> Switchable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let (app, seen) = answering(vec![StatusCode::OK]);
        let app = app.layer(axum::middleware::map_response(|mut response: Response| async move {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }));
        let listener = ResetWhileDown {
            listener,
            up: up.clone(),
        };
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Switchable { url, seen, up }
    }

    /// From now on, connections are reset.
    pub fn go_down(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    /// From now on, connections are served again.
    pub fn come_back(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A listener that resets the connections it accepts while `up` is false.
struct ResetWhileDown {
    listener: tokio::net::TcpListener,
    up: Arc<AtomicBool>,
}

impl axum::serve::Listener for ResetWhileDown {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, address) = axum::serve::Listener::accept(&mut self.listener).await;
            if self.up.load(Ordering::SeqCst) {
                return (stream, address);
            }
            // A reset rather than a polite close: the client sees the receiver die.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A receiver that takes `delay` to answer 200 to each delivery.
pub async fn slow_receiver(delay: Duration) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let app = Router::new().route(
        "/hook",
        post({
            let seen = seen.clone();
            move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    seen.lock().await.push((headers, serde_json::from_str(&body).unwrap()));
                    StatusCode::OK
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A receiver that accepts connections and never answers.
pub async fn hung_receiver() -> String {
    hung_receiver_counting().await.0
}

/// A receiver that accepts connections and never answers, with how many it accepted.
pub async fn hung_receiver_counting() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, accepted)
}

/// A loopback port on which nothing listens (yet): bound and not listening, so that
/// connections are refused and no other process can take the port while it is held.
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
    pub url: String,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let url = format!("http://{}/hook", socket.local_addr().unwrap());
        ClosedPort { socket, url }
    }

    /// Starts a receiver on the port, answering with `answers` in turn (see [`serve`]).
    pub fn open(self, answers: Vec<StatusCode>) -> Seen {
        let listener = self.socket.listen(1024).unwrap();
        serve(listener, answers, CancellationToken::new())
    }
}

/// Waits, checking every 20 ms, until `condition` holds of the subscription's delivery
/// counts, and returns them; fails after 20 s, however slow the machine.
pub async fn stats_until(
    store: &dyn Store,
    subscription: SubscriptionId,
    what: &str,
    condition: impl Fn(&mlgrid_store::DeliveryStats) -> bool,
) -> mlgrid_store::DeliveryStats {
    let started = Instant::now();
    loop {
        let stats = store.delivery_stats(subscription).await.unwrap();
        if condition(&stats) {
            return stats;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Secrets as the salt's bytes, so that tests can check signatures.
pub struct FixedSecrets;

impl WebhookSecrets for FixedSecrets {
    fn secret(&self, salt: &str) -> Vec<u8> {
        salt.as_bytes().to_vec()
    }
}

pub struct Bed {
    pub store: Arc<dyn Store>,
    pub topic: SourceId,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Bed {
    pub async fn new(addresses: AddressPolicy) -> Bed {
        Bed::with_config(DispatcherConfig {
            schedule: RetrySchedule { scale: 0.001 },
            timeout: Duration::from_millis(500),
            addresses,
            ..DispatcherConfig::default()
        })
        .await
    }

    pub async fn with_config(config: DispatcherConfig) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
        let topic = store
            .create_source(
                &NewSource {
                    kind: SourceKind::Topic,
                    name: "hooks".into(),
                    subscription_id: "s".into(),
                    resource_group: "rg".into(),
                    retention: Default::default(),
                },
                &[],
            )
            .await
            .unwrap()
            .id;
        let shutdown = CancellationToken::new();
        tokio::spawn(Fanout::new(store.clone(), chrono::Duration::minutes(5)).run(shutdown.clone()));
        tokio::spawn(
            Dispatcher::new(store.clone(), config, Arc::new(FixedSecrets))
                .unwrap()
                .run(shutdown.clone()),
        );
        Bed {
            store,
            topic,
            shutdown,
            _dir: dir,
        }
    }

    pub async fn subscribe(&self, name: &str, url: &str, extra: Value) -> SubscriptionId {
        let mut spec = json!({"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}}});
        for (k, v) in extra.as_object().unwrap() {
            if k == "destination" {
                for (dk, dv) in v.as_object().unwrap() {
                    spec["destination"]["properties"][dk] = dv.clone();
                }
            } else {
                spec[k] = v.clone();
            }
        }
        let put = SubscriptionPut {
            name: name.into(),
            spec: serde_json::from_value(spec).expect("a valid definition"),
            provisioning_state: ProvisioningState::Succeeded,
            expires_at: None,
            secret_salt: format!("secret-of-{name}"),
        };
        self.store.put_subscription(self.topic, put, None).await.unwrap().0.id
    }

    /// Appends events `e0` to `e{count - 1}`.
    pub async fn publish(&self, count: usize) {
        self.append(0..count).await;
    }

    /// Appends the one event `e{i}`.
    pub async fn publish_one(&self, i: usize) {
        self.append(i..i + 1).await;
    }

    async fn append(&self, range: std::ops::Range<usize>) {
        let events = range
            .map(|i| {
                let body = json!({"topic": "/t", "subject": format!("s/{i}"), "eventType": "T", "eventTime": "2026-11-26T16:00:00.0000000Z",
                                  "id": format!("e{i}"), "data": {"i": i}, "dataVersion": "2.0", "metadataVersion": "1"});
                NewEvent { id: format!("e{i}"), schema: mlgrid_core::EventSchema::EventGridSchema, event_type: "T".into(), subject: format!("s/{i}"), body: body.to_string() }
            })
            .collect();
        self.store.append_events(self.topic, events).await.unwrap();
    }

    /// Waits until the subscription's deliveries are all finished.
    pub async fn settled(&self, subscription: SubscriptionId) -> mlgrid_store::DeliveryStats {
        stats_until(&*self.store, subscription, "deliveries did not settle", |stats| {
            stats.pending == 0 && stats.delivered + stats.dead_lettered > 0
        })
        .await
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn loopback() -> AddressPolicy {
    AddressPolicy {
        allow_loopback: true,
        ..AddressPolicy::default()
    }
}

/// Every file under `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}
