//! `mlgrid run|experiment|model|deployment|dataset ...`: the ML lifecycle.

use anyhow::anyhow;
use mlgrid_core::lifecycle::parse_tags;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::args::{DatasetCommand, DeploymentCommand, EndRunArgs, ExperimentCommand, ModelCommand, RunCommand};
use crate::client::{Client, list_value};

/// `KEY=VALUE` arguments as a JSON object.
fn tags(pairs: &[String]) -> anyhow::Result<Value> {
    let tags = parse_tags(pairs.iter().map(String::as_str)).map_err(|e| anyhow!(e))?;
    Ok(json!(tags))
}

fn base(workspace: &str) -> String {
    format!("/v1/workspaces/{workspace}")
}

/// The URI of a versioned asset (`models`, `datasets`): one version, or the latest.
fn versioned(workspace: &str, assets: &str, name: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{}/{assets}/{name}/versions/{v}", base(workspace)),
        None => format!("{}/{assets}/{name}", base(workspace)),
    }
}

async fn end_run(client: &Client, args: EndRunArgs, status: &str) -> anyhow::Result<Value> {
    let mut body = json!({"status": status});
    if let Some(error) = args.error {
        body["error"] = json!(error);
    }
    let uri = format!("{}/runs/{}", base(&args.run.workspace.workspace), args.run.run_id);
    client.call(Method::PATCH, &uri, Some(&body)).await
}

pub async fn run(client: &Client, command: RunCommand) -> anyhow::Result<Value> {
    match command {
        RunCommand::Start(args) => {
            let mut body = json!({
                "experimentName": args.experiment,
                "status": args.status,
                "tags": tags(&args.tags)?,
                "properties": tags(&args.properties)?,
            });
            for (key, value) in [
                ("runId", args.run_id),
                ("runType", args.run_type),
                ("parentRunId", args.parent),
            ] {
                if let Some(value) = value {
                    body[key] = json!(value);
                }
            }
            client
                .post(&format!("{}/runs", base(&args.workspace.workspace)), &body)
                .await
        }
        RunCommand::Complete(args) => end_run(client, args, "Completed").await,
        RunCommand::Fail(args) => end_run(client, args, "Failed").await,
        RunCommand::Cancel(args) => end_run(client, args, "Canceled").await,
        RunCommand::Show(run) => {
            client
                .get(&format!("{}/runs/{}", base(&run.workspace.workspace), run.run_id))
                .await
        }
        RunCommand::List { workspace, experiment } => {
            let query = experiment.map(|e| format!("?experiment={e}")).unwrap_or_default();
            list_value(
                client
                    .get(&format!("{}/runs{query}", base(&workspace.workspace)))
                    .await?,
            )
        }
        RunCommand::LogMetric { run, name, value, step } => {
            let body = json!({"metrics": [{"name": name, "value": value, "step": step}]});
            client
                .post(
                    &format!("{}/runs/{}/metrics", base(&run.workspace.workspace), run.run_id),
                    &body,
                )
                .await
        }
        RunCommand::Logs {
            run,
            step,
            stderr,
            follow,
        } => {
            let ws = &run.workspace.workspace;
            super::pipelines::logs(client, ws, &run.run_id, step.as_deref(), stderr, follow).await?;
            Ok(Value::Null)
        }
        RunCommand::Metrics(run) => list_value(
            client
                .get(&format!(
                    "{}/runs/{}/metrics",
                    base(&run.workspace.workspace),
                    run.run_id
                ))
                .await?,
        ),
    }
}

pub async fn experiment(client: &Client, command: ExperimentCommand) -> anyhow::Result<Value> {
    match command {
        ExperimentCommand::List(ws) => list_value(client.get(&format!("{}/experiments", base(&ws.workspace))).await?),
    }
}

pub async fn model(client: &Client, command: ModelCommand) -> anyhow::Result<Value> {
    match command {
        ModelCommand::Register {
            workspace,
            name,
            path,
            description,
            tags: t,
            properties,
        } => {
            let mut body = json!({"name": name, "tags": tags(&t)?, "properties": tags(&properties)?});
            if let Some(path) = path {
                body["path"] = json!(path);
            }
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            client
                .post(&format!("{}/models", base(&workspace.workspace)), &body)
                .await
        }
        ModelCommand::List {
            workspace,
            name,
            include_archived,
        } => {
            let mut query = format!("?includeArchived={include_archived}");
            if let Some(name) = name {
                query.push_str(&format!("&name={name}"));
            }
            list_value(
                client
                    .get(&format!("{}/models{query}", base(&workspace.workspace)))
                    .await?,
            )
        }
        ModelCommand::Show {
            workspace,
            name,
            version,
        } => {
            client
                .get(&versioned(&workspace.workspace, "models", &name, version))
                .await
        }
        ModelCommand::Update {
            model,
            description,
            tags: set,
            remove_tags,
            properties,
        } => {
            let mut tag_patch: Map<String, Value> = match tags(&set)? {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            for key in remove_tags {
                tag_patch.insert(key, Value::Null);
            }
            let mut body = json!({"tags": tag_patch, "properties": tags(&properties)?});
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            let uri = format!(
                "{}/models/{}/versions/{}",
                base(&model.workspace.workspace),
                model.name,
                model.version
            );
            client.call(Method::PATCH, &uri, Some(&body)).await
        }
        ModelCommand::Archive(model) => {
            let uri = format!(
                "{}/models/{}/versions/{}",
                base(&model.workspace.workspace),
                model.name,
                model.version
            );
            client.call(Method::PATCH, &uri, Some(&json!({"archived": true}))).await
        }
        ModelCommand::Deploy {
            workspace,
            name,
            models,
            compute_type,
            tags: t,
            properties,
        } => {
            let body = json!({"computeType": compute_type, "models": models, "tags": tags(&t)?, "properties": tags(&properties)?});
            client
                .call(
                    Method::PUT,
                    &format!("{}/deployments/{name}", base(&workspace.workspace)),
                    Some(&body),
                )
                .await
        }
    }
}

pub async fn deployment(client: &Client, command: DeploymentCommand) -> anyhow::Result<Value> {
    match command {
        DeploymentCommand::List(ws) => list_value(client.get(&format!("{}/deployments", base(&ws.workspace))).await?),
        DeploymentCommand::Show(d) => {
            client
                .get(&format!("{}/deployments/{}", base(&d.workspace.workspace), d.name))
                .await
        }
        DeploymentCommand::Delete(d) => {
            client
                .delete(&format!("{}/deployments/{}", base(&d.workspace.workspace), d.name))
                .await
        }
    }
}

pub async fn dataset(client: &Client, command: DatasetCommand) -> anyhow::Result<Value> {
    match command {
        DatasetCommand::Register {
            workspace,
            name,
            path,
            description,
            tags: t,
        } => {
            let mut body = json!({"name": name, "path": path, "tags": tags(&t)?});
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            client
                .post(&format!("{}/datasets", base(&workspace.workspace)), &body)
                .await
        }
        DatasetCommand::List { workspace, name } => {
            let query = name.map(|n| format!("?name={n}")).unwrap_or_default();
            list_value(
                client
                    .get(&format!("{}/datasets{query}", base(&workspace.workspace)))
                    .await?,
            )
        }
        DatasetCommand::Show {
            workspace,
            name,
            version,
        } => {
            client
                .get(&versioned(&workspace.workspace, "datasets", &name, version))
                .await
        }
    }
}
