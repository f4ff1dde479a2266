-- Eventloom schema 3: subscription checkpoints.
--
-- One row per subscription (its name). A subscription to all events or to
-- a category keeps its cursor in commit order, (tx, position), exactly as
-- loom_store_read_all() pages on it; a subscription to one stream keeps
-- the version of the last event it handled in `version` (-1: none) and
-- leaves (tx, position) at ('0', 0). A subscription saves its row after
-- each batch it has handled, so a restart redelivers at most that batch.
CREATE TABLE loom.checkpoints (
    name       text        PRIMARY KEY,
    tx         xid8        NOT NULL,
    position   bigint      NOT NULL,
    version    bigint      NOT NULL DEFAULT -1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
