//! Opening the store a command names: the one way `serve`, `migrate`,
//! `replay`, `rebuild` and `report` do it, with the same error and the
//! migrations applied.

use crate::config::redact_url;
use crate::store::{OpenMode, Store};
use anyhow::Context;

/// Opens `url` (creating a SQLite file only with [`OpenMode::Create`]),
/// sets the production environment names (empty: the defaults) and applies
/// the migrations. An error names the database, its password redacted.
pub async fn open_store(url: &str, mode: OpenMode, production_environments: &[String]) -> anyhow::Result<Store> {
    let store = match mode {
        OpenMode::Create => Store::open(url).await,
        OpenMode::Existing => Store::open_existing(url).await,
    };
    let store = store
        .with_context(|| format!("cannot open the database {}", redact_url(url)))?
        .with_production_environments(production_environments);
    store.migrate().await.with_context(|| format!("cannot migrate the database {}", redact_url(url)))?;
    Ok(store)
}
