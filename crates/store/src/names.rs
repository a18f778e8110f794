//! Names of workspaces, topics and principals: unique ignoring case, as Azure resource
//! names are, and found whatever the case they are given in; each keeps the case it was
//! created with. Both backends compare `lower(name)` (names are ASCII), under a unique
//! index on it.

/// Why a name cannot be used: `existing` has it, ignoring case.
pub(crate) fn taken(what: &str, existing: &str) -> String {
    format!(
        "{what} `{existing}` already exists (names are unique ignoring case, as in Azure); use it, or choose another name"
    )
}

/// Why a database holding names that differ only in case (`clashes`) cannot be upgraded.
pub(crate) fn clashing(clashes: &str) -> String {
    format!(
        "names of workspaces, topics and principals must now be unique ignoring case (as Azure resource \
         names are), but these differ only in case: {clashes}. Keep one of each: delete the others with the \
         mlgrid version that created them, or rename them in the database (e.g. UPDATE sources SET name = \
         'wsA-2' WHERE kind = 'workspace' AND name = 'wsA'), then start again"
    )
}
