//! Nobody locked out: the last Owner keeps its key, and `mlgrid admin recover` is the
//! way back in for someone with access to the database, on SQLite (the server stopped
//! or running) and on PostgreSQL. Needs the PostgreSQL server at
//! `MLGRID_TEST_DATABASE_URL` for the second test.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Server};
use serde_json::Value;

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY: &str = "recovery-test-owner-key-0123456789abcdef";

/// Runs `mlgrid admin recover` with `args`; returns the principal's name and its key.
fn recover(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(BIN)
        .args(["admin", "recover"])
        .args(args)
        .env_remove("MLGRID_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin recover {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only this once"));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        printed["name"].as_str().unwrap().to_owned(),
        printed["key"].as_str().unwrap().to_owned(),
        printed["created"].as_bool().unwrap(),
    )
}

fn data_dir_args(data: &Path) -> Vec<&str> {
    vec!["--data-dir", data.to_str().unwrap()]
}

/// Principal names as `principal list` shows them to the holder of `key`.
fn principals(server: &Server, key: &str) -> Vec<String> {
    let listed = server.json(&["principal", "list", "--api-key", key]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_last_owner_keeps_its_key_and_a_lost_one_is_recovered_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.json(&["principal", "create", "--name", "helper"]);
    server.json(&[
        "role",
        "assignment",
        "create",
        "--assignee",
        "helper",
        "--role",
        "Owner",
    ]);
    // Revokes what it can: another Owner's keys, while admin's still work.
    assert_eq!(
        server.json(&["principal", "key", "revoke", "--name", "helper"])["revoked"],
        1
    );
    let refused = server.cli(&["principal", "key", "revoke", "--name", "admin"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        message.contains("`admin` is the last Owner") && message.contains("Create another Owner first"),
        "{message}"
    );
    server.json(&["principal", "list"]);

    // The key is lost anyway (deleted with the server stopped): recover offline.
    assert!(server.terminate());
    std::fs::remove_file(data.join("admin.key")).unwrap();
    let (name, key, created) = recover(&data_dir_args(&data));
    assert!(name.starts_with("recovered-owner-") && created, "{name}");
    assert!(key.starts_with("mlg_"));
    let db = std::fs::read(data.join("mlgrid.db")).unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "only the key's hash is stored"
    );

    let server = Server::start(&data);
    assert!(!data.join("admin.key").exists(), "no second bootstrap");
    assert!(principals(&server, &key).contains(&name));
    // Now admin is not the last Owner: its lost key can be revoked.
    assert_eq!(
        server.json(&["principal", "key", "revoke", "--name", "admin", "--api-key", &key])["revoked"],
        1
    );

    // Beside the running server (which holds the data directory's lock file), reusing
    // the principal: the new key works at once.
    let mut args = data_dir_args(&data);
    args.extend(["--name", &name]);
    let (again, second_key, created) = recover(&args);
    assert_eq!((again.as_str(), created), (name.as_str(), false));
    assert!(principals(&server, &second_key).contains(&name));
    assert!(principals(&server, &key).contains(&name), "the first key still works");
}

#[test]
fn an_owner_is_recovered_in_postgresql_beside_a_running_node() {
    let base =
        std::env::var("MLGRID_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("recovery_{}", uuid::Uuid::new_v4().simple());
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([&base, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "PostgreSQL at {base} refused `{sql}` (is it running?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("CREATE SCHEMA {schema}"));
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options%5Bsearch_path%5D={schema}");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        dir.path(),
        &["--database-url", &url],
        &[("MLGRID_SECRET", SECRET), ("MLGRID_BOOTSTRAP_KEY", KEY)],
    );
    let refused = server.cli(&["principal", "key", "revoke", "--name", "admin", "--api-key", KEY]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`admin` is the last Owner"));

    let (name, key, created) = recover(&["--database-url", &url, "--name", "rescuer"]);
    assert_eq!((name.as_str(), created), ("rescuer", true));
    assert!(principals(&server, &key).contains(&name));
    drop(server);
    psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
