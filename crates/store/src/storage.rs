//! How much room the store takes, and whether it ran out of it.

use std::sync::Mutex;

use crate::error::{Result, StoreError};

/// The sizes of the store's files, and whether writes fail for want of space. What
/// `/healthz` and `/metrics` show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes of the write-ahead log file (SQLite's `-wal`); `None` on PostgreSQL, whose
    /// WAL is the database server's own.
    pub wal_bytes: Option<u64>,
    /// Bytes of the database: its file on SQLite, `pg_database_size` on PostgreSQL.
    pub database_bytes: u64,
    /// Why writes fail for want of space, while they do: the last write that changed
    /// something failed with [`StoreError::Full`], and none has succeeded since.
    pub full: Option<String>,
}

/// Whether the disk was full at the last write that changed something.
#[derive(Debug, Default)]
pub(crate) struct FullDisk(Mutex<Option<String>>);

impl FullDisk {
    /// Notes a write's outcome: a [`StoreError::Full`] marks the disk full.
    pub(crate) fn note<T>(&self, result: &Result<T>) {
        if let Err(StoreError::Full(reason)) = result {
            let mut full = self.0.lock().expect("never held across a panic");
            if full.is_none() {
                tracing::error!(%reason, "the store's disk is full: writes are refused until space is freed");
            }
            *full = Some(reason.clone());
        }
    }

    /// A write that changed something committed: there is room again.
    pub(crate) fn clear(&self) {
        if self.0.lock().expect("never held across a panic").take().is_some() {
            tracing::info!("the store's disk has room again: writes resume");
        }
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().expect("never held across a panic").clone()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.0.lock().expect("never held across a panic").is_some()
    }
}
