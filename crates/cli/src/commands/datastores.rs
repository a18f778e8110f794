//! `mlgrid datastore ...`. Stored secrets are read from this command's environment,
//! never from its arguments (which other users see in `ps`), and sent once to the server,
//! which seals them; nothing here prints them.

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::args::{DatastoreArgs, DatastoreCommand, DatastoreCredentials, DatastoreType, WatchCommand, WatchRef};
use crate::client::{Client, list_value};

/// The variables stored secrets are read from.
const ACCOUNT_KEY: &str = "MLGRID_DATASTORE_ACCOUNT_KEY";
const SECRET_ACCESS_KEY: &str = "MLGRID_DATASTORE_SECRET_ACCESS_KEY";
const SERVICE_ACCOUNT_KEY: &str = "MLGRID_DATASTORE_SERVICE_ACCOUNT_KEY";

fn uri(workspace: &str, name: &str) -> String {
    format!("/v1/workspaces/{workspace}/datastores/{name}")
}

pub async fn run(client: &Client, command: DatastoreCommand) -> anyhow::Result<Value> {
    match command {
        DatastoreCommand::Create(args) => {
            let body = body(&args)?;
            client.put(&uri(&args.workspace.workspace, &args.name), &body).await
        }
        DatastoreCommand::Show { workspace, name } => client.get(&uri(&workspace.workspace, &name)).await,
        DatastoreCommand::List(workspace) => list_value(
            client
                .get(&format!("/v1/workspaces/{}/datastores", workspace.workspace))
                .await?,
        ),
        DatastoreCommand::Delete { workspace, name } => {
            client.delete(&uri(&workspace.workspace, &name)).await?;
            Ok(json!({"deleted": name}))
        }
        DatastoreCommand::Watch(command) => watch(client, command).await,
    }
}

fn watch_uri(watch: &WatchRef) -> String {
    format!(
        "{}/watches/{}",
        uri(&watch.workspace.workspace, &watch.datastore),
        watch.name
    )
}

async fn watch(client: &Client, command: WatchCommand) -> anyhow::Result<Value> {
    match command {
        WatchCommand::Create {
            watch,
            topic,
            path,
            recursive,
            polling_interval,
            polling_interval_seconds,
        } => {
            let mut body = json!({"topic": topic, "recursive": recursive});
            for (field, value) in [
                ("pathOnDatastore", path.map(Value::from)),
                ("pollingInterval", polling_interval.map(Value::from)),
                ("pollingIntervalSeconds", polling_interval_seconds.map(Value::from)),
            ] {
                if let Some(value) = value {
                    body[field] = value;
                }
            }
            client.put(&watch_uri(&watch), &body).await
        }
        WatchCommand::Show(watch) => client.get(&watch_uri(&watch)).await,
        WatchCommand::List { workspace, datastore } => list_value(
            client
                .get(&format!("{}/watches", uri(&workspace.workspace, &datastore)))
                .await?,
        ),
        WatchCommand::Delete(watch) => {
            client.delete(&watch_uri(&watch)).await?;
            Ok(json!({"deleted": watch.name}))
        }
    }
}

/// A variable of this command's environment that a stored secret needs.
fn secret_from_env(variable: &str) -> anyhow::Result<String> {
    std::env::var(variable)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("--credentials stored reads the secret from {variable}: set it in the environment"))
}

/// The request body of `create`; the server checks which settings the kind takes.
fn body(args: &DatastoreArgs) -> anyhow::Result<Value> {
    let kind = match args.kind {
        DatastoreType::Local => "local",
        DatastoreType::Azureblob => "azureblob",
        DatastoreType::S3 => "s3",
        DatastoreType::Gcs => "gcs",
    };
    let mut settings = Map::new();
    for (field, value) in [
        ("path", &args.path),
        ("account", &args.account),
        ("container", &args.container),
        ("bucket", &args.bucket),
        ("region", &args.region),
        ("endpoint", &args.endpoint),
        ("prefix", &args.prefix),
    ] {
        if let Some(value) = value {
            settings.insert(field.to_owned(), json!(value));
        }
    }
    let mut body = json!({"kind": kind, "settings": settings});
    if args.access_key_id.is_some() && args.credentials != Some(DatastoreCredentials::Stored) {
        bail!("--access-key-id is for --credentials stored (s3)");
    }
    match (args.credentials, args.kind) {
        (None, _) => {}
        (Some(DatastoreCredentials::Environment), _) => body["credentials"] = json!("environment"),
        (Some(DatastoreCredentials::Stored), DatastoreType::Local) => {
            bail!("a local datastore takes no credentials: leave out --credentials")
        }
        (Some(DatastoreCredentials::Stored), kind) => {
            body["credentials"] = json!("stored");
            body["secret"] = match kind {
                DatastoreType::Azureblob => json!({"accountKey": secret_from_env(ACCOUNT_KEY)?}),
                DatastoreType::S3 => {
                    let Some(id) = &args.access_key_id else {
                        bail!(
                            "--credentials stored for s3 needs --access-key-id (the key itself from {SECRET_ACCESS_KEY})"
                        )
                    };
                    json!({"accessKeyId": id, "secretAccessKey": secret_from_env(SECRET_ACCESS_KEY)?})
                }
                DatastoreType::Gcs => json!({"serviceAccountKey": secret_from_env(SERVICE_ACCOUNT_KEY)?}),
                DatastoreType::Local => unreachable!("refused above"),
            };
        }
    }
    Ok(body)
}
