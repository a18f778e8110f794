//! `mlgrid workspace ...` and `mlgrid topic ...`.

use serde_json::{Value, json};

use crate::args::{CreateSourceArgs, SourceCommand, TopicCommand, TopicKeyCommand};
use crate::client::{Client, list_value};

fn create_body(args: &CreateSourceArgs) -> Value {
    let mut body = json!({"name": args.name});
    if let Some(s) = &args.subscription_id {
        body["subscriptionId"] = json!(s);
    }
    if let Some(rg) = &args.resource_group {
        body["resourceGroup"] = json!(rg);
    }
    body
}

/// Runs the create/list/show/delete commands shared by workspaces and topics, under
/// `/v1/{collection}`.
async fn source_command(client: &Client, collection: &str, command: SourceCommand) -> anyhow::Result<Value> {
    match command {
        SourceCommand::Create(args) => client.post(&format!("/v1/{collection}"), &create_body(&args)).await,
        SourceCommand::List => list_value(client.get(&format!("/v1/{collection}")).await?),
        SourceCommand::Show(args) => client.get(&format!("/v1/{collection}/{}", args.name)).await,
        SourceCommand::Delete(args) => client.delete(&format!("/v1/{collection}/{}", args.name)).await,
    }
}

pub async fn workspace(client: &Client, command: SourceCommand) -> anyhow::Result<Value> {
    source_command(client, "workspaces", command).await
}

pub async fn topic(client: &Client, command: TopicCommand) -> anyhow::Result<Value> {
    let shared = match command {
        TopicCommand::Create(args) => SourceCommand::Create(args),
        TopicCommand::List => SourceCommand::List,
        TopicCommand::Show(args) => SourceCommand::Show(args),
        TopicCommand::Delete(args) => SourceCommand::Delete(args),
        TopicCommand::Key(TopicKeyCommand::List(args)) => {
            return client
                .post(&format!("/v1/topics/{}/listKeys", args.name), &json!({}))
                .await;
        }
        TopicCommand::Key(TopicKeyCommand::Regenerate(args)) => {
            let body = json!({"keyName": args.key_name});
            return client
                .post(&format!("/v1/topics/{}/regenerateKey", args.name), &body)
                .await;
        }
    };
    source_command(client, "topics", shared).await
}
