//! `mlgrid migrate`: the PostgreSQL schema, brought up to date before nodes start; and
//! what `serve` shares with it about database URLs.

use mlgrid_store::{PostgresStore, StoreError};

use crate::args::MigrateArgs;

/// The form a database URL takes, for error messages.
const URL_FORM: &str = "postgres://user:password@host:port/database, with ?sslmode=require for TLS";

/// A database URL as it may be shown: no password, no parameters (they may hold one).
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Why the database at `url` cannot be used, and what to check. The store error is
/// shown by its message alone: a driver error repeats its causes in its message.
pub fn cannot_use(url: &str, error: StoreError) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot use the PostgreSQL database at {}: {error}. Check that the server is up and that \
         --database-url (MLGRID_DATABASE_URL) is right: {URL_FORM}",
        shown(url)
    )
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let migrated = PostgresStore::migrate(&args.database_url)
        .await
        .map_err(|e| cannot_use(&args.database_url, e))?;
    for (version, description) in &migrated.applied {
        println!("applied migration {version:04} {description}");
    }
    match migrated.applied.len() {
        0 => println!(
            "the schema at {} was up to date (version {}); nothing to do",
            shown(&args.database_url),
            migrated.version
        ),
        n => println!(
            "applied {n} migration(s) to {}; the schema is at version {}",
            shown(&args.database_url),
            migrated.version
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            shown("postgres://mlgrid:hunter2@db.internal:5432/grid?sslmode=require&password=x"),
            "postgres://mlgrid@db.internal:5432/grid"
        );
        assert_eq!(shown("not a url"), "(not a URL)");
    }
}
