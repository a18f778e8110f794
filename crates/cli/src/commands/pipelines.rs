//! `mlgrid pipeline ...`, `mlgrid pipeline-endpoint ...` and `mlgrid run logs`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::args::{PipelineCommand, PipelineEndpointCommand, PipelineRef, SubmitArgs};
use crate::client::{Client, list_value};

fn base(workspace: &str) -> String {
    format!("/v1/workspaces/{workspace}")
}

/// How often `--follow` asks for more of a log.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

pub async fn pipeline(client: &Client, command: PipelineCommand) -> anyhow::Result<Value> {
    match command {
        PipelineCommand::Publish {
            workspace,
            file,
            version,
        } => {
            let definition = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the pipeline file {}", file.display()))?;
            let mut body = json!({"definition": definition});
            if let Some(version) = version {
                body["version"] = json!(version);
            }
            let mut published = client
                .post(&format!("{}/pipelines", base(&workspace.workspace)), &body)
                .await?;
            // The definition is the file just given: no need to print it back.
            if let Some(fields) = published.as_object_mut() {
                fields.remove("definition");
            }
            Ok(published)
        }
        PipelineCommand::List { workspace, name } => {
            let query = name.map(|n| format!("?name={n}")).unwrap_or_default();
            let mut list = list_value(
                client
                    .get(&format!("{}/pipelines{query}", base(&workspace.workspace)))
                    .await?,
            )?;
            for pipeline in list.as_array_mut().into_iter().flatten() {
                if let Some(fields) = pipeline.as_object_mut() {
                    fields.remove("definition");
                }
            }
            Ok(list)
        }
        PipelineCommand::Show(p) => client.get(&pipeline_uri(&p)).await,
        PipelineCommand::Disable(p) => client.post(&format!("{}/disable", pipeline_uri(&p)), &json!({})).await,
        PipelineCommand::Enable(p) => client.post(&format!("{}/enable", pipeline_uri(&p)), &json!({})).await,
        PipelineCommand::Submit(args) => submit(client, args).await,
        PipelineCommand::ShowRun(run) => {
            client
                .get(&format!(
                    "{}/pipeline-runs/{}",
                    base(&run.workspace.workspace),
                    run.run_id
                ))
                .await
        }
    }
}

fn pipeline_uri(p: &PipelineRef) -> String {
    format!("{}/pipelines/{}", base(&p.workspace.workspace), p.id)
}

/// `NAME=VALUE` arguments, split at the first `=`.
pub(crate) fn pairs<'a>(what: &str, args: &'a [String]) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    args.iter()
        .map(|arg| {
            arg.split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| anyhow!("{what} `{arg}` is not NAME=VALUE"))
        })
        .collect()
}

/// The submission body of Azure ML's REST endpoint, from the command line.
fn submission(args: &SubmitArgs) -> anyhow::Result<Value> {
    let mut parameters = Map::new();
    for (name, value) in pairs("--param", &args.params)? {
        parameters.insert(name.to_owned(), json!(value));
    }
    let mut data_paths = Map::new();
    for (name, value) in pairs("--data-path", &args.data_paths)? {
        let Some((datastore, path)) = value.split_once(':') else {
            bail!("--data-path `{name}={value}` needs DATASTORE:PATH, e.g. {name}=workspaceblobstore:raw/data.csv");
        };
        data_paths.insert(
            name.to_owned(),
            json!({"DataStoreName": datastore, "RelativePath": path}),
        );
    }
    let mut body = json!({
        "ExperimentName": args.experiment_name,
        "ParameterAssignments": parameters,
        "DataPathAssignments": data_paths,
        "RunSource": "CLI",
        "ContinueOnStepFailure": args.continue_on_step_failure,
    });
    if let Some(description) = &args.description {
        body["Description"] = json!(description);
    }
    Ok(body)
}

async fn submit(client: &Client, args: SubmitArgs) -> anyhow::Result<Value> {
    let body = submission(&args)?;
    let ws = base(&args.workspace.workspace);
    let uri = match (&args.id, &args.endpoint) {
        (Some(id), _) => format!("{ws}/pipelines/{id}/submit"),
        (None, Some(endpoint)) => format!("{ws}/pipeline-endpoints/{endpoint}/submit"),
        (None, None) => bail!("give the pipeline's --id or an --endpoint"),
    };
    client.post(&uri, &body).await
}

pub async fn endpoint(client: &Client, command: PipelineEndpointCommand) -> anyhow::Result<Value> {
    match command {
        PipelineEndpointCommand::Create {
            workspace,
            name,
            pipeline_id,
            description,
        } => {
            let body = json!({"name": name, "pipelineId": pipeline_id, "description": description});
            client
                .post(&format!("{}/pipeline-endpoints", base(&workspace.workspace)), &body)
                .await
        }
        PipelineEndpointCommand::Show { workspace, name } => {
            client
                .get(&format!("{}/pipeline-endpoints/{name}", base(&workspace.workspace)))
                .await
        }
        PipelineEndpointCommand::List(workspace) => list_value(
            client
                .get(&format!("{}/pipeline-endpoints", base(&workspace.workspace)))
                .await?,
        ),
        PipelineEndpointCommand::SetDefault {
            workspace,
            name,
            pipeline_id,
        } => {
            let body = json!({"pipelineId": pipeline_id});
            let uri = format!("{}/pipeline-endpoints/{name}/default", base(&workspace.workspace));
            client.call(Method::PUT, &uri, Some(&body)).await
        }
    }
}

/// Prints a step's log to stdout; with `follow`, until the step ends.
pub async fn logs(
    client: &Client,
    workspace: &str,
    run_id: &str,
    step: Option<&str>,
    stderr: bool,
    follow: bool,
) -> anyhow::Result<()> {
    let mut query = format!("stream={}", if stderr { "stderr" } else { "stdout" });
    if let Some(step) = step {
        query.push_str(&format!("&step={step}"));
    }
    let mut offset = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let uri = format!(
            "{}/pipeline-runs/{run_id}/logs?{query}&offset={offset}",
            base(workspace)
        );
        let (bytes, size, complete) = client.get_log(&uri).await?;
        out.write_all(&bytes)?;
        out.flush()?;
        offset += bytes.len() as u64;
        if offset < size {
            continue;
        }
        if !follow || complete {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
