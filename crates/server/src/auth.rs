//! Who is calling, and whether they may.
//!
//! Management calls carry `Authorization: Bearer <api key>`. The [`Caller`] extractor
//! finds the key's principal and roles; handlers then [`Caller::require`] the role the
//! call needs. Keys are never logged.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use mlgrid_store::{Principal, Role, RoleAssignment, Source};

use crate::error::ApiError;
use crate::keys::{api_key_hash, hash_matches};
use crate::state::AppState;

/// An authenticated principal and the roles it holds.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    roles: Vec<RoleAssignment>,
}

/// Where a call acts: on every source (creating one), or on one source.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Everything,
    Source(&'a Source),
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Owner => 3,
        Role::Contributor => 2,
        Role::Reader => 1,
    }
}

impl Caller {
    /// The strongest role the caller holds on `scope` (a role on every source counts
    /// on each).
    pub fn role_on(&self, scope: Scope<'_>) -> Option<Role> {
        self.roles
            .iter()
            .filter(|a| match (a.source_id, scope) {
                (None, _) => true,
                (Some(id), Scope::Source(source)) => id == source.id,
                (Some(_), Scope::Everything) => false,
            })
            .map(|a| a.role)
            .max_by_key(|r| rank(*r))
    }

    /// Refuses with 403, naming the role needed, unless the caller holds `needed` or a
    /// stronger role on `scope`.
    pub fn require(&self, needed: Role, scope: Scope<'_>) -> Result<(), ApiError> {
        self.require_for(needed, scope, "", "ask an Owner to grant it")
    }

    /// Refuses with 403 unless the caller holds Owner on `source`, for skipping the
    /// validation handshake of a webhook: that points events at an endpoint that never
    /// agreed to receive them, so it takes more than creating a subscription does.
    pub fn require_to_skip_validation(&self, source: &Source) -> Result<(), ApiError> {
        self.require_for(
            Role::Owner,
            Scope::Source(source),
            " to skip the validation handshake (skipValidation, --skip-validation), since the endpoint \
             has not agreed to receive events",
            "leave skipValidation out so that the endpoint validates the subscription, or ask an Owner \
             to create it (or to start the server with --allow-contributor-skip-validation)",
        )
    }

    fn require_for(&self, needed: Role, scope: Scope<'_>, purpose: &str, remedy: &str) -> Result<(), ApiError> {
        let held = self.role_on(scope);
        if held.is_some_and(|r| rank(r) >= rank(needed)) {
            return Ok(());
        }
        let stronger = match needed {
            Role::Reader => " (or Contributor or Owner)",
            Role::Contributor => " (or Owner)",
            Role::Owner => "",
        };
        let place = match scope {
            Scope::Everything => "on all workspaces and topics".to_owned(),
            Scope::Source(source) => format!("on {} `{}`", source.kind, source.name),
        };
        let has = match held {
            Some(role) => format!("holds only {}", role.as_str()),
            None => "holds no role there".to_owned(),
        };
        Err(ApiError::Forbidden(format!(
            "this call needs the {needed}{stronger} role {place}{purpose}; principal `{name}` {has}; {remedy}",
            needed = needed.as_str(),
            name = self.principal.name,
        )))
    }
}

const MISSING_KEY: &str = "send an API key as `Authorization: Bearer <key>`; the first Owner key \
     is in <data-dir>/admin.key (the CLI reads it, or takes --api-key / MLGRID_API_KEY)";

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized(MISSING_KEY.to_owned()))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::Unauthorized(MISSING_KEY.to_owned()))?;
        let wanted = api_key_hash(key);
        let found = state.store.principal_by_key_id(&wanted.key_id).await?;
        let Some((principal, stored)) = found.filter(|(_, stored)| hash_matches(key, &stored.hash)) else {
            return Err(ApiError::Unauthorized(
                "the API key is not valid (revoked, mistyped, or from another server)".to_owned(),
            ));
        };
        debug_assert_eq!(stored.key_id, wanted.key_id);
        let roles = state.store.role_assignments(principal.id).await?;
        Ok(Caller { principal, roles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use mlgrid_core::resource::SourceKind;
    use mlgrid_store::SourceId;

    fn source(id: i64) -> Source {
        Source {
            id: SourceId(id),
            kind: SourceKind::Workspace,
            name: format!("ws{id}"),
            subscription_id: "s".into(),
            resource_group: "rg".into(),
            created_at: Utc::now(),
            last_sequence: 0,
            retention: Default::default(),
            pruned_through: 0,
            stored_bytes: 0,
        }
    }

    fn caller(roles: &[(Option<i64>, Role)]) -> Caller {
        Caller {
            principal: Principal {
                id: 7,
                name: "bob".into(),
                created_at: Utc::now(),
            },
            roles: roles
                .iter()
                .map(|&(source_id, role)| RoleAssignment {
                    principal_id: 7,
                    source_id: source_id.map(SourceId),
                    role,
                })
                .collect(),
        }
    }

    #[test]
    fn the_strongest_applicable_role_counts() {
        let c = caller(&[(None, Role::Reader), (Some(1), Role::Owner)]);
        assert_eq!(c.role_on(Scope::Source(&source(1))), Some(Role::Owner));
        assert_eq!(c.role_on(Scope::Source(&source(2))), Some(Role::Reader));
        assert_eq!(c.role_on(Scope::Everything), Some(Role::Reader));
        assert!(c.require(Role::Contributor, Scope::Source(&source(1))).is_ok());
    }

    #[test]
    fn refusals_name_the_role_needed_and_held() {
        let c = caller(&[(Some(1), Role::Reader)]);
        let ApiError::Forbidden(msg) = c.require(Role::Contributor, Scope::Source(&source(1))).unwrap_err() else {
            panic!("expected 403")
        };
        assert!(
            msg.contains("Contributor (or Owner)") && msg.contains("workspace `ws1`") && msg.contains("only Reader"),
            "{msg}"
        );
        let ApiError::Forbidden(msg) = c.require(Role::Reader, Scope::Source(&source(2))).unwrap_err() else {
            panic!("expected 403")
        };
        assert!(msg.contains("no role"), "{msg}");
        assert!(c.require(Role::Contributor, Scope::Everything).is_err());
    }

    #[test]
    fn skipping_validation_takes_owner_and_says_what_else_to_do() {
        let c = caller(&[(Some(1), Role::Contributor), (Some(2), Role::Owner)]);
        let ApiError::Forbidden(msg) = c.require_to_skip_validation(&source(1)).unwrap_err() else {
            panic!("expected 403")
        };
        assert!(
            msg.contains("needs the Owner role on workspace `ws1` to skip the validation handshake")
                && msg.contains("only Contributor")
                && msg.contains("--allow-contributor-skip-validation"),
            "{msg}"
        );
        assert!(c.require_to_skip_validation(&source(2)).is_ok());
    }
}
