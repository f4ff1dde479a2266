-- Eventloom schema 16: the relay's read seeks to its cursor instead of
-- walking every row the outbox still holds before it.
--
-- loom.outbox_fetch() and loom.outbox_pending() said
--     outbox = p_outbox AND (outbox, tx, position) > (p_outbox, p_tx, p_pos)
-- With both an equality and a row comparison on the index's first column,
-- PostgreSQL 15's btree starts the scan at the equality alone, at the
-- first entry of the outbox, and filters its way to the cursor. Every
-- published row not yet deleted by loom.outbox_cleanup(), and every
-- deleted one not yet vacuumed away, was read again by every fetch:
-- 499 buffers and 5.7 ms for a batch of 85 behind 250,000 such rows,
-- against 7 buffers and 0.07 ms when the comparison leaves the first
-- column to the equality:
--     outbox = p_outbox AND (tx, position) > (p_tx, p_pos)
-- which the btree uses as the start of the scan. The outbox's dead
-- entries pile up between two vacuums (autovacuum visits a database once
-- a minute), so the relay's read grew slower the busier it was.
-- The rows returned are the same: for rows of outbox p_outbox the two
-- conditions are equivalent.
--
-- loom.outbox_pending(), which a relay asks after an empty read, was worse:
-- a SQL function whose body has a subquery is never inlined, so its
-- query is planned with parameters, and for EXISTS that plan was a
-- sequential scan of the whole outbox table (41 ms and 5,955 buffers
-- behind those 250,000 rows). It now asks for the first row past the
-- cursor in index order, which plans as an index-only scan of 4 buffers.

CREATE OR REPLACE FUNCTION loom.outbox_fetch(p_outbox text, p_tx xid8,
                                             p_position bigint,
                                             p_limit integer)
RETURNS SETOF loom.outbox
LANGUAGE sql STABLE AS $$
    SELECT * FROM loom.outbox
     WHERE outbox = p_outbox
       AND (tx, position) > (p_tx, p_position)
       AND tx < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY outbox, tx, position
     LIMIT p_limit;
$$;

CREATE OR REPLACE FUNCTION loom.outbox_pending(p_outbox text, p_tx xid8,
                                               p_position bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (SELECT true FROM loom.outbox
             WHERE outbox = p_outbox
               AND (tx, position) > (p_tx, p_position)
             ORDER BY outbox, tx, position
             LIMIT 1) IS NOT NULL;
$$;
