//! Event sources (workspaces and custom topics), their names and resource paths.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Default Azure subscription id used when a source is created without one.
pub const DEFAULT_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000000";
/// Default resource group used when a source is created without one.
pub const DEFAULT_RESOURCE_GROUP: &str = "mlgrid";

/// What kind of event source a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An Azure ML workspace; its events come from lifecycle changes.
    Workspace,
    /// A custom topic; its events come from publishers holding its access key.
    Topic,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Workspace => "workspace",
            SourceKind::Topic => "topic",
        }
    }

    /// Checks `name` against the naming rules of this kind of resource.
    ///
    /// Workspaces follow Azure ML (3-33 characters: letters, digits, `-` and `_`,
    /// starting with a letter or digit); topics follow Event Grid (3-50 characters:
    /// letters, digits and `-`).
    pub fn validate_name(self, name: &str) -> Result<(), InvalidName> {
        let (max, extra): (usize, &[char]) = match self {
            SourceKind::Workspace => (33, &['-', '_']),
            SourceKind::Topic => (50, &['-']),
        };
        let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c));
        let starts_well = name.starts_with(|c: char| c.is_ascii_alphanumeric());
        if (3..=max).contains(&name.len()) && valid_chars && starts_well {
            Ok(())
        } else {
            let allowed = extra.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>();
            Err(InvalidName(format!(
                "{kind} name `{name}` is invalid: use 3 to {max} characters, letters, digits \
                 and {allowed}, starting with a letter or digit",
                kind = self.as_str(),
                allowed = allowed.join(" and "),
            )))
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

/// Checks an Azure subscription id or resource group name given for a source.
///
/// Both become segments of the source's resource path, so they must be non-empty and
/// free of `/`; resource groups follow Azure's rule (1-90 characters: letters, digits,
/// `-`, `_`, `.`, `(`, `)`, not ending with `.`).
pub fn validate_path_segment(what: &str, value: &str) -> Result<(), InvalidName> {
    let ok = (1..=90).contains(&value.len())
        && !value.ends_with('.')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c));
    if ok {
        Ok(())
    } else {
        Err(InvalidName(format!(
            "{what} `{value}` is invalid: use 1 to 90 characters, letters, digits, \
             `-`, `_`, `.`, `(` and `)`, not ending with `.`"
        )))
    }
}

/// The resource path of a source: the `topic` of every event it raises.
///
/// Workspaces: `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}`;
/// custom topics: `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.EventGrid/topics/{name}`.
pub fn resource_path(kind: SourceKind, subscription_id: &str, resource_group: &str, name: &str) -> String {
    let provider = match kind {
        SourceKind::Workspace => "Microsoft.MachineLearningServices/workspaces",
        SourceKind::Topic => "Microsoft.EventGrid/topics",
    };
    format!("/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{provider}/{name}")
}

/// Reads a source's resource path back: its kind and name. Provider and segment names
/// compare case-insensitively, as Azure resource ids do.
pub fn parse_resource_path(path: &str) -> Option<(SourceKind, String)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        [
            "",
            subscriptions,
            _,
            resource_groups,
            _,
            providers,
            provider,
            kind,
            name,
        ] if subscriptions.eq_ignore_ascii_case("subscriptions")
            && resource_groups.eq_ignore_ascii_case("resourceGroups")
            && providers.eq_ignore_ascii_case("providers")
            && !name.is_empty() =>
        {
            let kind = if provider.eq_ignore_ascii_case("Microsoft.MachineLearningServices")
                && kind.eq_ignore_ascii_case("workspaces")
            {
                SourceKind::Workspace
            } else if provider.eq_ignore_ascii_case("Microsoft.EventGrid") && kind.eq_ignore_ascii_case("topics") {
                SourceKind::Topic
            } else {
                return None;
            };
            Some((kind, (*name).to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_topic_path_matches_azure_ml() {
        assert_eq!(
            resource_path(SourceKind::Workspace, "sub", "rg", "ws1"),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1"
        );
        assert_eq!(
            resource_path(SourceKind::Topic, "sub", "rg", "orders"),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.EventGrid/topics/orders"
        );
    }

    #[test]
    fn resource_paths_parse_back() {
        for kind in [SourceKind::Workspace, SourceKind::Topic] {
            let path = resource_path(kind, "sub", "rg", "name-1");
            assert_eq!(parse_resource_path(&path), Some((kind, "name-1".to_owned())));
        }
        let lower = "/subscriptions/s/resourcegroups/rg/providers/microsoft.eventgrid/topics/t1";
        assert_eq!(parse_resource_path(lower), Some((SourceKind::Topic, "t1".to_owned())));
        for bad in [
            "",
            "/subscriptions/s",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x",
        ] {
            assert_eq!(parse_resource_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_follow_the_azure_rules() {
        assert!(SourceKind::Workspace.validate_name("ml_ws-1").is_ok());
        assert!(SourceKind::Topic.validate_name("orders-2").is_ok());
        for bad in ["ab", "-abc", "a/b", "a b", &"x".repeat(34)] {
            assert!(SourceKind::Workspace.validate_name(bad).is_err(), "{bad}");
        }
        assert!(SourceKind::Topic.validate_name("under_score").is_err());
        assert!(SourceKind::Topic.validate_name(&"x".repeat(50)).is_ok());
        let msg = SourceKind::Topic.validate_name("a").unwrap_err().to_string();
        assert!(msg.contains("3 to 50"), "{msg}");
    }

    #[test]
    fn path_segments_refuse_slashes() {
        assert!(validate_path_segment("resource group", "my-rg(1)").is_ok());
        assert!(validate_path_segment("resource group", "a/b").is_err());
        assert!(validate_path_segment("resource group", "").is_err());
        assert!(validate_path_segment("resource group", "rg.").is_err());
    }
}
