-- Azure resource names ignore case: `wsA` and `wsa` name one workspace, so they cannot
-- both exist, and a lookup of either finds it. Principals are named the same way. Names
-- keep the case they were created with. Names are ASCII (checked when created), which
-- SQLite's lower() folds the way PostgreSQL's does.
--
-- A database already holding names that differ only in case is refused before this runs,
-- with the names and what to do (SqliteStore::open), rather than by a bare index error.
CREATE UNIQUE INDEX sources_kind_name_nocase ON sources (kind, lower(name));
CREATE UNIQUE INDEX principals_name_nocase ON principals (lower(name));
