-- Eventloom schema 17: fewer writes for each saga step and each message.
--
-- Counted with pg_waldump over a `loom-bench saga` run at 1,000 sagas/s,
-- a 3-step saga wrote 146 WAL records. Two groups of them did nothing a
-- reader needs:
--
-- * 8 of them were entries of saga_log's primary key on its own id. Every
--   reader of the log (the orchestrator's start check, `loomctl saga
--   show`, the demo's report) asks for one saga's entries in order, which
--   the second index, (saga_id, id), answers. That pair is unique as well
--   (id is), so it becomes the primary key and the table keeps one index:
--   one index entry per log entry instead of two.
--
-- * 6 of them locked outbox rows that loom.outbox_cleanup() was about to
--   delete: its FOR UPDATE SKIP LOCKED wrote a lock record for each row,
--   then the delete wrote another. Only cleanups ever delete outbox rows,
--   and they run behind the relay's cursor where nothing else writes, so
--   the row locks kept cleanups apart from each other only. A transaction-
--   scoped advisory lock per outbox does that for the whole statement: a
--   second cleanup of the same outbox returns 0 at once instead of
--   waiting for the first.

-- One index for the log: its readers' order.
ALTER TABLE loom.saga_log DROP CONSTRAINT saga_log_pkey;
DROP INDEX loom.saga_log_saga;
ALTER TABLE loom.saga_log ADD CONSTRAINT saga_log_pkey
    PRIMARY KEY (saga_id, id);

-- Deletes up to p_limit published rows (behind the cursor) of p_outbox and
-- returns how many; 0 at once when another cleanup of p_outbox is running
-- (advisory lock 1819242353, keyed by hashtext(outbox), until commit).
-- Short statements: writers and the relay never wait for a cleanup.
CREATE OR REPLACE FUNCTION loom.outbox_cleanup(p_outbox text, p_limit integer)
RETURNS bigint
LANGUAGE sql AS $$
    WITH cur AS (
        SELECT r.tx, r.position FROM loom.outbox_relays r
         WHERE r.outbox = p_outbox
           AND pg_try_advisory_xact_lock(1819242353, hashtext(p_outbox))),
    gone AS (
        -- The cursor as two scalars, so that the row comparison bounds
        -- the index scan (as a join it only filtered it, and a relay
        -- stuck behind a million messages had each cleanup read them all).
        DELETE FROM loom.outbox o
         WHERE o.ctid = ANY (ARRAY(
               SELECT m.ctid FROM loom.outbox m
                WHERE m.outbox = p_outbox
                  AND (m.tx, m.position)
                      <= ((SELECT tx FROM cur), (SELECT position FROM cur))
                ORDER BY m.tx, m.position
                LIMIT p_limit))
        RETURNING 1)
    SELECT count(*) FROM gone;
$$;
