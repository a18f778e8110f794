-- Values a database is set up with once, which every node must agree on: the first
-- node to start writes them, the others compare (e.g. the fingerprint of the server
-- secret, from which topic keys and webhook signing secrets are derived).
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
