//! `mlgrid principal ...` and `mlgrid role assignment ...`.

use anyhow::bail;
use serde_json::{Value, json};

use crate::args::{PrincipalCommand, PrincipalKeyCommand, RoleAssignmentCommand, RoleCommand, RoleScope};
use crate::client::{Client, list_value};

pub async fn principal(client: &Client, command: PrincipalCommand) -> anyhow::Result<Value> {
    match command {
        PrincipalCommand::Create(args) => client.post("/v1/principals", &json!({"name": args.name})).await,
        PrincipalCommand::List => list_value(client.get("/v1/principals").await?),
        PrincipalCommand::Key(PrincipalKeyCommand::Create(args)) => {
            client
                .post(&format!("/v1/principals/{}/keys", args.name), &json!({}))
                .await
        }
        PrincipalCommand::Key(PrincipalKeyCommand::Revoke(args)) => {
            client.delete(&format!("/v1/principals/{}/keys", args.name)).await
        }
    }
}

fn scope_query(assignee: Option<&str>, scope: &RoleScope) -> String {
    let pairs: Vec<String> = [
        ("assignee", assignee),
        ("workspace", scope.workspace.as_deref()),
        ("topic", scope.topic.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
    .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

pub async fn role(client: &Client, RoleCommand::Assignment(command): RoleCommand) -> anyhow::Result<Value> {
    match command {
        RoleAssignmentCommand::Create { assignee, role, scope } => {
            let body = json!({"assignee": assignee, "role": role, "workspace": scope.workspace, "topic": scope.topic});
            client.post("/v1/roleAssignments", &body).await
        }
        RoleAssignmentCommand::List { assignee, scope } => list_value(
            client
                .get(&format!(
                    "/v1/roleAssignments{}",
                    scope_query(assignee.as_deref(), &scope)
                ))
                .await?,
        ),
        RoleAssignmentCommand::Delete { assignee, role, scope } => {
            let path = format!("/v1/roleAssignments{}", scope_query(Some(&assignee), &scope));
            let listed = list_value(client.get(&path).await?)?;
            // The list filter matches a workspace or topic; with neither, only roles on everything are meant.
            let everywhere = scope.workspace.is_none() && scope.topic.is_none();
            let matching: Vec<&Value> = listed
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| {
                    role.as_ref()
                        .is_none_or(|r| a["role"].as_str().is_some_and(|held| held.eq_ignore_ascii_case(r)))
                })
                .filter(|a| !everywhere || (a["workspace"].is_null() && a["topic"].is_null()))
                .collect();
            if matching.is_empty() {
                bail!(
                    "no role assignment of `{assignee}` matches; see `mlgrid role assignment list --assignee {assignee}`"
                );
            }
            for assignment in &matching {
                client
                    .delete(&format!("/v1/roleAssignments/{}", assignment["id"]))
                    .await?;
            }
            Ok(json!({"deleted": matching.len()}))
        }
    }
}
