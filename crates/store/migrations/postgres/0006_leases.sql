-- Named leases with fencing tokens, for work one node at a time does. `token` grows
-- each time the lease changes hands and never otherwise. A released lease keeps its
-- row with no holder, so that its tokens are never given out again.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT,
    token       BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
