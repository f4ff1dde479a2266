-- Eventloom schema 4: exactly-once checkpoints, parked events, projections
-- and the horizon report.
--
-- Checkpoints move by compare-and-set. A runner commits its batch's
-- effects and loom.checkpoint_advance() in one transaction, naming the
-- checkpoint it read; when someone else moved it meanwhile (a second
-- runner under the same name, a finished rebuild, an operator reset) the
-- call fails with LM004 and the whole transaction, effects included, rolls
-- back. The runner then reloads the checkpoint and goes on from there, so
-- no effect is applied twice.
CREATE FUNCTION loom.checkpoint_advance(p_name text, p_from_tx xid8,
                                        p_from_position bigint,
                                        p_from_version bigint, p_tx xid8,
                                        p_position bigint, p_version bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE loom.checkpoints
       SET tx = p_tx, position = p_position, version = p_version,
           updated_at = now()
     WHERE name = p_name AND tx = p_from_tx AND position = p_from_position
       AND version = p_from_version;
    IF FOUND THEN
        RETURN;
    END IF;
    -- No row yet: only a runner starting from the beginning may create it.
    IF p_from_tx = '0'::xid8 AND p_from_position = 0
       AND p_from_version = -1 THEN
        INSERT INTO loom.checkpoints (name, tx, position, version)
        VALUES (p_name, p_tx, p_position, p_version)
        ON CONFLICT (name) DO NOTHING;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'LM004',
        MESSAGE = format('checkpoint "%s" was moved by someone else', p_name),
        DETAIL = 'another runner under the same name, a projection rebuild '
                 'or an operator changed it',
        HINT = 'the runner reloads the checkpoint and goes on from there';
END
$$;

-- The first statement of a transactional batch: locks the checkpoint row
-- the batch will advance, or fails with LM004 when it no longer says what
-- the runner read. Taking this lock before the handler's statements touch
-- the read model gives every writer of a model one lock order (checkpoint
-- row, then tables), the order loom.projection_swap() takes too, so a live
-- batch and a swap queue behind each other instead of deadlocking. A
-- missing row passes for a runner starting from the beginning;
-- checkpoint_advance() then creates it.
CREATE FUNCTION loom.checkpoint_claim(p_name text, p_tx xid8,
                                      p_position bigint, p_version bigint)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c loom.checkpoints;
BEGIN
    SELECT * INTO c FROM loom.checkpoints WHERE name = p_name FOR UPDATE;
    IF FOUND THEN
        IF c.tx = p_tx AND c.position = p_position
           AND c.version = p_version THEN
            RETURN;
        END IF;
    ELSIF p_tx = '0'::xid8 AND p_position = 0 AND p_version = -1 THEN
        RETURN;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'LM004',
        MESSAGE = format('checkpoint "%s" was moved by someone else', p_name),
        DETAIL = 'another runner under the same name, a projection rebuild '
                 'or an operator changed it',
        HINT = 'the runner reloads the checkpoint and goes on from there';
END
$$;

-- Events a subscription gave up on: its handler failed on them for the
-- configured number of attempts. The subscription goes on past them.
-- `loomctl parked replay` sets replay_requested_at and wakes channel
-- loom_parked; the running subscription then delivers each such event once
-- more and deletes the row when its handler accepts it (or records the new
-- error and clears the request). `loomctl parked drop` deletes rows.
CREATE TABLE loom.parked (
    subscription        text        NOT NULL,
    event_id            uuid        NOT NULL,
    stream              text        NOT NULL,
    version             bigint      NOT NULL,
    tx                  xid8        NOT NULL,
    position            bigint      NOT NULL,
    type                text        NOT NULL,
    error               text        NOT NULL,
    attempts            integer     NOT NULL,
    parked_at           timestamptz NOT NULL DEFAULT now(),
    replay_requested_at timestamptz,
    PRIMARY KEY (subscription, event_id)
);

CREATE INDEX parked_replay ON loom.parked (subscription, position)
    WHERE replay_requested_at IS NOT NULL;

-- Asks the subscription `p_subscription` to retry its parked events (one
-- event when p_event_id is not NULL). Returns how many were marked.
CREATE FUNCTION loom.parked_request_replay(p_subscription text,
                                           p_event_id uuid)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE loom.parked SET replay_requested_at = now()
     WHERE subscription = p_subscription
       AND (p_event_id IS NULL OR event_id = p_event_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('loom_parked', p_subscription);
    END IF;
    RETURN n;
END
$$;

-- Projections, registered by their runner on first start. A read model in
-- PostgreSQL lives in its own schema (`schema_name`); a rebuild fills the
-- schema `schema_name || '__rebuild'` from the first event, under the
-- checkpoint `checkpoint || ':rebuild'`, then swaps the two schemas and
-- checkpoints in one transaction (loom.projection_swap). `schema_name` is
-- NULL for a read model kept in memory.
CREATE TABLE loom.projections (
    name               text        PRIMARY KEY,
    schema_name        text,
    checkpoint         text        NOT NULL UNIQUE,
    generation         bigint      NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    rebuilt_at         timestamptz,
    rebuild_started_at timestamptz,
    rebuild_total      bigint,
    rebuild_done       bigint,
    rebuild_updated_at timestamptz
);

-- The blue/green swap: the rebuilt schema becomes the live one and its
-- checkpoint the live checkpoint, atomically. The live runner's next
-- batch fails its compare-and-set (LM004), rolls back and reloads. Locks
-- the live checkpoint row first, so a live batch in flight either commits
-- before the swap or is rolled back by it.
CREATE FUNCTION loom.projection_swap(p_name text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    p loom.projections;
    r loom.checkpoints;
BEGIN
    SELECT * INTO p FROM loom.projections WHERE name = p_name FOR UPDATE;
    IF NOT FOUND OR p.schema_name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'LM005',
            MESSAGE = format('no projection "%s" with a PostgreSQL read model',
                             p_name);
    END IF;
    PERFORM 1 FROM loom.checkpoints WHERE name = p.checkpoint FOR UPDATE;
    SELECT * INTO r FROM loom.checkpoints
     WHERE name = p.checkpoint || ':rebuild' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'LM005',
            MESSAGE = format('projection "%s" has no rebuild to swap in',
                             p_name);
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE',
                   p.schema_name || '__old');
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = p.schema_name) THEN
        EXECUTE format('ALTER SCHEMA %I RENAME TO %I', p.schema_name,
                       p.schema_name || '__old');
    END IF;
    EXECUTE format('ALTER SCHEMA %I RENAME TO %I',
                   p.schema_name || '__rebuild', p.schema_name);
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE',
                   p.schema_name || '__old');
    INSERT INTO loom.checkpoints AS c (name, tx, position, version)
    VALUES (p.checkpoint, r.tx, r.position, r.version)
    ON CONFLICT (name) DO UPDATE
       SET tx = EXCLUDED.tx, position = EXCLUDED.position,
           version = EXCLUDED.version, updated_at = now();
    DELETE FROM loom.checkpoints WHERE name = r.name;
    -- The rebuild's parked events replace the old model's.
    DELETE FROM loom.parked WHERE subscription = p.checkpoint;
    UPDATE loom.parked SET subscription = p.checkpoint
     WHERE subscription = r.name;
    UPDATE loom.projections
       SET generation = generation + 1, rebuilt_at = now(),
           rebuild_started_at = NULL, rebuild_total = NULL,
           rebuild_done = NULL, rebuild_updated_at = NULL
     WHERE name = p_name;
    RETURN p.generation + 1;
END
$$;

-- What holds readers back, for a runner that is caught up while events
-- wait behind the horizon (loom_store_read_all()): the oldest transaction
-- with an id, when it has been open at least p_min_age, and how many
-- committed events wait. No row when nothing waits.
CREATE FUNCTION loom.horizon_blocker(p_min_age interval)
RETURNS TABLE (waiting bigint, pid integer, application text, state text,
               xact_age double precision, gid text)
LANGUAGE sql STABLE AS $$
    WITH w AS (
        SELECT count(*) AS n FROM loom.events
         WHERE tx >= pg_snapshot_xmin(pg_current_snapshot())
    ), s AS (
        SELECT a.pid, coalesce(a.application_name, '') AS application,
               coalesce(a.state, '') AS state,
               extract(epoch FROM now() - a.xact_start)::float8 AS xact_age,
               NULL::text AS gid, age(a.backend_xid) AS a
          FROM pg_stat_activity a
         WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid()
           AND a.xact_start < now() - p_min_age
        UNION ALL
        SELECT NULL, '', 'prepared', extract(epoch FROM now() - x.prepared),
               x.gid, age(x.transaction)
          FROM pg_prepared_xacts x
         WHERE x.prepared < now() - p_min_age
    )
    SELECT w.n, s.pid, s.application, s.state, s.xact_age, s.gid
      FROM w, s
     WHERE w.n > 0
     ORDER BY s.a DESC
     LIMIT 1
$$;
