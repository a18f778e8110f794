//! Registered datastores through the API: local folders always; S3 against moto's server
//! (`MLGRID_TEST_S3`) and Azure Blob against Azurite (`MLGRID_TEST_AZURITE`), which
//! `scripts/services` starts. Without them a test is skipped with a note, except in CI
//! (`CI` set), where it fails. Every request goes to 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{HOST, TestApi};
use hmac::{Hmac, KeyInit, Mac};
use mlgrid_core::resource::SourceKind;
use mlgrid_delivery::AddressPolicy;
use mlgrid_server::ServerConfig;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// Azurite's well-known account and key (public, the same for every Azurite).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// A secret access key for moto, which must never show in an answer.
const S3_SECRET: &str = "s3-secret-never-shown-7f3a9c";

/// Where an emulator is, from `var`; `None` (with a note) outside CI when it is not set.
fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: CI must start the emulators (scripts/services, run by scripts/test)")
        }
        Err(_) => {
            eprintln!("skipped: {var} is not set (run scripts/test, or source scripts/services)");
            None
        }
    }
}

/// A server that may reach loopback endpoints (the emulators), with workspace `mlws`.
async fn api() -> TestApi {
    let mut config = ServerConfig {
        public_url: Some(format!("http://{HOST}")),
        ..ServerConfig::default()
    };
    config.delivery.addresses = AddressPolicy {
        allow_private: false,
        allow_loopback: true,
    };
    let api = TestApi::with_config(config).await;
    api.ok("POST", "/v1/workspaces", json!({"name": "mlws"})).await;
    api
}

fn pipeline_reading(datastore: &str, path: &str) -> String {
    format!(
        "name: copy\ndata_paths:\n  input_data: {{datastore: {datastore}, path: {path}}}\nsteps:\n  - name: cat\n    \
         command: [\"sh\", \"-c\", \"cat \\\"$MLGRID_DATA_INPUT_DATA\\\"\"]\n"
    )
}

/// Publishes a pipeline reading `datastore`'s `path`, runs it, and returns its id and what
/// its step printed.
async fn run_reading(api: &TestApi, datastore: &str, path: &str) -> (String, String) {
    let published = api
        .ok(
            "POST",
            "/v1/workspaces/mlws/pipelines",
            json!({"definition": pipeline_reading(datastore, path)}),
        )
        .await;
    let id = published["id"].as_str().unwrap().to_owned();
    let stop = CancellationToken::new();
    tokio::spawn(api.state.executor.clone().run(stop.clone()));
    let submitted = api
        .ok(
            "POST",
            &format!("/v1/workspaces/mlws/pipelines/{id}/submit"),
            json!({"ExperimentName": "copy"}),
        )
        .await;
    let run_id = submitted["Id"].as_str().unwrap().to_owned();
    let mut run = Value::Null;
    for _ in 0..400 {
        run = api
            .call("GET", &format!("/v1/workspaces/mlws/pipeline-runs/{run_id}"), None)
            .await
            .body;
        if matches!(run["run"]["status"].as_str(), Some("Completed" | "Failed")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
    assert_eq!(run["run"]["status"], json!("Completed"), "{run}");
    let log = api
        .call(
            "GET",
            &format!("/v1/workspaces/mlws/pipeline-runs/{run_id}/logs?step=cat&stream=stdout"),
            None,
        )
        .await;
    (id, log.body.as_str().unwrap_or_default().to_owned())
}

/// What a submission reading `path` on `datastore` of pipeline `id` answers.
async fn submit_path(api: &TestApi, id: &str, datastore: &str, path: &str) -> common::Reply {
    api.call(
        "POST",
        &format!("/v1/workspaces/mlws/pipelines/{id}/submit"),
        Some(json!({"ExperimentName": "copy", "DataPathAssignments": {"input_data": {"DataStoreName": datastore, "RelativePath": path}}})),
    )
    .await
}

/// The listing of a registered datastore, as data change schedules will poll it.
async fn listed(api: &TestApi, datastore: &str) -> Vec<String> {
    let ws = api.store.source(SourceKind::Workspace, "mlws").await.unwrap().id;
    let datastores = api.state.datastores.datastores(ws).await.unwrap();
    let listing = datastores.get(datastore).unwrap().list("", true).await.unwrap();
    listing.objects.into_iter().map(|o| o.path).collect()
}

/// Checks, for a remote datastore created with `good`: nothing stored after `wrong`
/// (wrong credentials or a missing bucket), listing, a file fetched for a step, `..`
/// refused, deletion refused while a pipeline reads it, and no secret in any answer.
async fn exercise_remote(api: &TestApi, name: &str, good: Value, wrong: Value, secret: &str) {
    let mut answers = String::new();
    let refused = api
        .call("PUT", &format!("/v1/workspaces/mlws/datastores/{name}"), Some(wrong))
        .await;
    answers += &refused.body.to_string();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], json!("DatastoreUnreachable"));
    assert!(
        refused
            .message()
            .contains(&format!("datastore `{name}` cannot be reached"))
            && refused.message().contains("Nothing was stored"),
        "{}",
        refused.message()
    );
    let missing = api
        .call("GET", &format!("/v1/workspaces/mlws/datastores/{name}"), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "nothing half-created");

    let created = api
        .call("PUT", &format!("/v1/workspaces/mlws/datastores/{name}"), Some(good))
        .await;
    answers += &created.body.to_string();
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["credentials"], json!("stored"));
    let shown = api
        .call("GET", &format!("/v1/workspaces/mlws/datastores/{name}"), None)
        .await;
    answers += &shown.body.to_string();
    let list = api.call("GET", "/v1/workspaces/mlws/datastores", None).await;
    answers += &list.body.to_string();
    assert_eq!(list.body["value"][0]["name"], json!(name));

    assert_eq!(listed(api, name).await, ["raw/latest.csv"]);
    let (id, printed) = run_reading(api, name, "raw/latest.csv").await;
    assert_eq!(printed, "a,b\n1,2\n", "the remote file was fetched for the step");

    let escape = submit_path(api, &id, name, "../other/secret.csv").await;
    assert_eq!(escape.status, StatusCode::BAD_REQUEST, "{}", escape.body);
    assert!(escape.message().contains("`..` is not allowed"), "{}", escape.message());
    let absent = submit_path(api, &id, name, "raw/absent.csv").await;
    assert_eq!(absent.status, StatusCode::BAD_REQUEST, "{}", absent.body);
    assert!(
        absent.message().contains("has no file `raw/absent.csv`"),
        "{}",
        absent.message()
    );

    let in_use = api
        .call("DELETE", &format!("/v1/workspaces/mlws/datastores/{name}"), None)
        .await;
    answers += &in_use.body.to_string();
    assert_eq!(in_use.status, StatusCode::CONFLICT, "{}", in_use.body);
    assert!(
        in_use.message().contains("`copy` version 1") && in_use.message().contains(&id),
        "{}",
        in_use.message()
    );
    api.ok(
        "POST",
        &format!("/v1/workspaces/mlws/pipelines/{id}/disable"),
        json!({}),
    )
    .await;
    let deleted = api
        .call("DELETE", &format!("/v1/workspaces/mlws/datastores/{name}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert!(!answers.contains(secret), "a secret was answered: {answers}");
}

#[tokio::test]
async fn local_datastores_are_checked_created_read_and_deleted_when_unused() {
    let api = api().await;
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(folder.path().join("raw")).unwrap();
    std::fs::write(folder.path().join("raw/latest.csv"), "a,b\n1,2\n").unwrap();
    let path = folder.path().to_str().unwrap();

    for (body, says) in [
        (json!({"kind": "ftp"}), "kind: `ftp` is not a datastore kind"),
        (json!({"kind": "local"}), "path: a local datastore needs one"),
        (
            json!({"kind": "local", "settings": {"path": "relative/dir"}}),
            "path: give the folder's absolute path",
        ),
        (
            json!({"kind": "local", "settings": {"path": "/no/such/folder"}}),
            "is not a folder",
        ),
        (
            json!({"kind": "local", "settings": {"path": path, "bucket": "b"}}),
            "bucket: a local datastore takes no bucket",
        ),
        (
            json!({"kind": "local", "settings": {"path": path}, "credentials": "environment"}),
            "credentials: a local datastore takes none",
        ),
    ] {
        let refused = api
            .call("PUT", "/v1/workspaces/mlws/datastores/files", Some(body))
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(refused.message().contains(says), "{} / {}", refused.message(), says);
    }
    let reserved = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/datastores/workspaceblobstore",
            Some(json!({"kind": "local", "settings": {"path": path}})),
        )
        .await;
    assert_eq!(reserved.status, StatusCode::BAD_REQUEST, "{}", reserved.body);
    assert_eq!(
        api.call("GET", "/v1/workspaces/mlws/datastores", None).await.body["value"],
        json!([]),
        "nothing stored by refused requests"
    );

    let created = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/datastores/files",
            Some(json!({"kind": "local", "settings": {"path": path}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["credentials"], json!("none"));
    assert_eq!(created.body["settings"]["path"], json!(path));
    let again = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/datastores/FILES",
            Some(json!({"kind": "local", "settings": {"path": path}})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(listed(&api, "files").await, ["raw/latest.csv"]);

    let (id, printed) = run_reading(&api, "files", "raw/latest.csv").await;
    assert_eq!(printed, "a,b\n1,2\n");
    let escape = submit_path(&api, &id, "files", "raw/../../etc/passwd").await;
    assert_eq!(escape.status, StatusCode::BAD_REQUEST, "{}", escape.body);
    assert!(escape.message().contains("`..` is not allowed"), "{}", escape.message());

    let in_use = api.call("DELETE", "/v1/workspaces/mlws/datastores/files", None).await;
    assert_eq!(in_use.status, StatusCode::CONFLICT, "{}", in_use.body);
    assert!(in_use.message().contains("is in use"), "{}", in_use.message());
    api.ok(
        "POST",
        &format!("/v1/workspaces/mlws/pipelines/{id}/disable"),
        json!({}),
    )
    .await;
    let deleted = api.call("DELETE", "/v1/workspaces/mlws/datastores/files", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = api.call("GET", "/v1/workspaces/mlws/datastores/files", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn endpoints_follow_the_webhook_address_rules() {
    let strict = TestApi::new().await;
    strict.ok("POST", "/v1/workspaces", json!({"name": "mlws"})).await;
    for (endpoint, says) in [
        ("http://127.0.0.1:5000", "loopback"),
        ("http://169.254.169.254", "link-local (cloud metadata)"),
        ("http://10.0.0.8:9000", "private"),
    ] {
        let refused = strict
            .call(
                "PUT",
                "/v1/workspaces/mlws/datastores/lake",
                Some(json!({"kind": "s3", "settings": {"bucket": "b", "endpoint": endpoint}, "credentials": "environment"})),
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(
            refused.message().starts_with("endpoint: ") && refused.message().contains(says),
            "{}",
            refused.message()
        );
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_refused_and_nothing_stored() {
    let api = api().await;
    // Bound but not listening: connections are refused, and no other process takes it.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    let refused = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/datastores/lake",
            Some(json!({"kind": "s3", "settings": {"bucket": "b", "endpoint": endpoint},
                "secret": {"accessKeyId": "id", "secretAccessKey": S3_SECRET}})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.message().contains("datastore `lake` cannot be reached"),
        "{}",
        refused.message()
    );
    assert!(!refused.body.to_string().contains(S3_SECRET));
    let missing = api.call("GET", "/v1/workspaces/mlws/datastores/lake", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn s3_datastores_on_moto() {
    let Some(endpoint) = service("MLGRID_TEST_S3") else {
        return;
    };
    let bucket = format!("mlgrid-{}", uuid::Uuid::new_v4().simple());
    let http = reqwest::Client::new();
    let made = http.put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(made.status().is_success(), "moto made no bucket: {}", made.status());
    let put = http
        .put(format!("{endpoint}/{bucket}/data/raw/latest.csv"))
        .body("a,b\n1,2\n")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());

    let api = api().await;
    let settings = json!({"bucket": bucket, "region": "us-east-1", "endpoint": endpoint, "prefix": "data"});
    let secret = json!({"accessKeyId": "AKIDMLGRIDTEST", "secretAccessKey": S3_SECRET});
    let good = json!({"kind": "s3", "settings": settings, "credentials": "stored", "secret": secret});
    let mut wrong = good.clone();
    wrong["settings"]["bucket"] = json!("no-such-bucket-mlgrid");
    exercise_remote(&api, "lake", good, wrong, S3_SECRET).await;
}

/// Creates a container on Azurite (object_store makes none), signed with its Shared Key.
async fn azurite_container(endpoint: &str, container: &str) {
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&STANDARD.decode(AZURITE_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let made = reqwest::Client::new()
        .put(format!("{endpoint}/{container}?restype=container"))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("Authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert!(
        made.status().is_success(),
        "Azurite made no container: {}",
        made.status()
    );
}

#[tokio::test]
async fn azure_blob_datastores_on_azurite() {
    let Some(endpoint) = service("MLGRID_TEST_AZURITE") else {
        return;
    };
    let container = format!("mlgrid-{}", uuid::Uuid::new_v4().simple());
    azurite_container(&endpoint, &container).await;
    let blobs = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .with_container_name(&container)
        .with_endpoint(endpoint.clone())
        .with_allow_http(true)
        .build()
        .unwrap();
    let blobs: Arc<dyn ObjectStore> = Arc::new(blobs);
    blobs
        .put(&"raw/latest.csv".into(), PutPayload::from_static(b"a,b\n1,2\n"))
        .await
        .unwrap();

    let api = api().await;
    let settings = json!({"account": AZURITE_ACCOUNT, "container": container, "endpoint": endpoint});
    let good = json!({"kind": "azureblob", "settings": settings, "secret": {"accountKey": AZURITE_KEY}});
    let wrong_key = STANDARD.encode([7u8; 64]);
    let wrong = json!({"kind": "azureblob", "settings": settings, "secret": {"accountKey": wrong_key}});
    exercise_remote(&api, "blobs", good, wrong, AZURITE_KEY).await;
}
