-- Eventloom schema 6: the transactional outbox, its relays, and the inbox.
--
-- A message leaves the database only through the outbox (DESIGN.md
-- principle 1): a handler writes it in the transaction of the state change
-- that caused it, and a relay publishes it once that transaction has
-- committed. The relay reads in commit order by the xid8 rule of the event
-- store (principle 2): only rows whose transaction is below the oldest one
-- still running, ordered by (tx, position), so a message that commits
-- late is never skipped.

-- The messages. `outbox` names the queue (one active relay each); the
-- primary key is the relay's read order. Rows behind a relay's cursor are
-- published and deleted in the background (loom.outbox_cleanup).
CREATE TABLE loom.outbox (
    outbox     text NOT NULL,
    tx         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    position   bigint GENERATED ALWAYS AS IDENTITY,
    topic      text NOT NULL,
    key        bytea,
    type       text,
    headers    bytea,             -- loom.Metadata protobuf (framework/proto)
    payload    bytea NOT NULL,
    message_id uuid NOT NULL,
    deliver_at timestamptz,       -- NULL: at once
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (outbox, tx, position)
);

-- One row per outbox: the relays' cursor (everything up to (tx, position)
-- is published), the active relay, and what it last reported.
CREATE TABLE loom.outbox_relays (
    outbox        text PRIMARY KEY,
    tx            xid8 NOT NULL DEFAULT '0',
    position      bigint NOT NULL DEFAULT 0,
    published     bigint NOT NULL DEFAULT 0, -- messages, ever
    rate          double precision NOT NULL DEFAULT 0, -- msg/s, recent
    leader        text,        -- "host pid"; NULL: none active
    leader_pid    integer,     -- its backend: pg_stat_activity.pid
    leader_since  timestamptz,
    transport     text,        -- the scheme it publishes through
    heartbeat_at  timestamptz,
    failing_since timestamptz, -- the transport has refused since then
    last_error    text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Wakes p_outbox's relay if it armed its channel (loom_outbox_<outbox>;
-- see schema 2 for why writers notify only then). SKIP LOCKED: racing
-- writers do not wait for each other; one of them notifies. The writers'
-- functions are PL/pgSQL: their plans are cached per session, where a SQL
-- function's statements are planned again at every call (a third of a
-- unit of work's time, measured).
CREATE FUNCTION loom.outbox_wake(p_outbox text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_woken integer;
BEGIN
    WITH woken AS (
        DELETE FROM loom.wakeups
         WHERE ctid IN (SELECT ctid FROM loom.wakeups
                         WHERE channel = 'loom_outbox_' || p_outbox
                           FOR UPDATE SKIP LOCKED)
        RETURNING channel)
    SELECT count(*) INTO v_woken FROM woken;
    IF v_woken > 0 THEN
        PERFORM pg_notify('loom_outbox_' || p_outbox, '');
    END IF;
END;
$$;

-- Adds messages to p_outbox in the caller's transaction: one row per
-- array element, and the relay's wake-up. A plain INSERT into
-- loom.outbox works too, but its messages wait for the relay's poll.
CREATE FUNCTION loom.outbox_add(p_outbox text, p_topics text[],
                                p_keys bytea[], p_types text[],
                                p_headers bytea[], p_payloads bytea[],
                                p_ids uuid[], p_deliver_at timestamptz[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loom.outbox (outbox, topic, key, type, headers, payload,
                             message_id, deliver_at)
    SELECT p_outbox, u.topic, u.key, u.type, u.headers, u.payload, u.id,
           u.deliver_at
      FROM unnest(p_topics, p_keys, p_types, p_headers, p_payloads, p_ids,
                  p_deliver_at)
           WITH ORDINALITY AS u(topic, key, type, headers, payload, id,
                                deliver_at, ord)
     ORDER BY u.ord;
    PERFORM loom.outbox_wake(p_outbox);
END;
$$;

-- The next messages of p_outbox after the cursor, in commit order; empty
-- while the oldest pending transaction is still running.
CREATE FUNCTION loom.outbox_fetch(p_outbox text, p_tx xid8, p_position bigint,
                                  p_limit integer)
RETURNS SETOF loom.outbox
LANGUAGE sql STABLE AS $$
    SELECT * FROM loom.outbox
     WHERE outbox = p_outbox
       AND (outbox, tx, position) > (p_outbox, p_tx, p_position)
       AND tx < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY outbox, tx, position
     LIMIT p_limit;
$$;

-- Makes the calling session p_outbox's relay, or says who is: returns the
-- row (cursor included) when this session holds the outbox's advisory
-- lock. The lock is a session lock of the relay's own connection, so a
-- relay that dies (or loses its connection) loses it at once and a
-- standby's next try takes over.
CREATE FUNCTION loom.outbox_lead(p_outbox text, p_leader text,
                                 p_transport text)
RETURNS SETOF loom.outbox_relays
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_lock(1819242349, hashtext(p_outbox)) THEN
        RETURN;
    END IF;
    INSERT INTO loom.outbox_relays (outbox) VALUES (p_outbox)
    ON CONFLICT (outbox) DO NOTHING;
    RETURN QUERY
    UPDATE loom.outbox_relays
       SET leader = p_leader, leader_pid = pg_backend_pid(),
           leader_since = now(), transport = p_transport,
           heartbeat_at = now(), rate = 0, updated_at = now()
     WHERE outbox = p_outbox
    RETURNING *;
END;
$$;

-- Records that the messages up to (p_to_tx, p_to_position) are published:
-- a compare-and-set from the cursor the relay read, so a relay that lost
-- its lock (its connection broke and another took over) can never move
-- the cursor back. LM016 when it moved meanwhile.
CREATE FUNCTION loom.outbox_advance(p_outbox text, p_from_tx xid8,
                                    p_from_position bigint, p_to_tx xid8,
                                    p_to_position bigint, p_count bigint,
                                    p_rate double precision)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE loom.outbox_relays
       SET tx = p_to_tx, position = p_to_position,
           published = published + p_count, rate = p_rate,
           heartbeat_at = now(), failing_since = NULL, updated_at = now()
     WHERE outbox = p_outbox AND tx = p_from_tx AND position = p_from_position
       AND leader_pid = pg_backend_pid();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'outbox "%": another relay moved the cursor', p_outbox
            USING ERRCODE = 'LM016',
                  HINT = 'this relay lost its leadership; it stands by';
    END IF;
END;
$$;

-- The active relay's heartbeat and health: p_error NULL clears a failure.
CREATE FUNCTION loom.outbox_heartbeat(p_outbox text, p_rate double precision,
                                      p_error text)
RETURNS void
LANGUAGE sql AS $$
    UPDATE loom.outbox_relays
       SET heartbeat_at = now(), rate = p_rate, last_error = COALESCE(p_error,
           last_error),
           failing_since = CASE WHEN p_error IS NULL THEN NULL
                                ELSE COALESCE(failing_since, now()) END,
           updated_at = now()
     WHERE outbox = p_outbox AND leader_pid = pg_backend_pid();
$$;

-- A relay that stops cleanly steps down (its lock goes with it).
CREATE FUNCTION loom.outbox_resign(p_outbox text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE loom.outbox_relays
       SET leader = NULL, leader_pid = NULL, leader_since = NULL, rate = 0,
           updated_at = now()
     WHERE outbox = p_outbox AND leader_pid = pg_backend_pid();
    PERFORM pg_advisory_unlock(1819242349, hashtext(p_outbox));
END;
$$;

-- Deletes up to p_limit published rows (behind the cursor) of p_outbox and
-- returns how many. Short statements that lock only what they delete, so
-- cleanup never holds up writers or the relay.
CREATE FUNCTION loom.outbox_cleanup(p_outbox text, p_limit integer)
RETURNS bigint
LANGUAGE sql AS $$
    WITH cur AS (
        SELECT tx, position FROM loom.outbox_relays WHERE outbox = p_outbox),
    gone AS (
        DELETE FROM loom.outbox o
         WHERE o.ctid IN (
               SELECT m.ctid FROM loom.outbox m, cur
                WHERE m.outbox = p_outbox
                  AND (m.outbox, m.tx, m.position)
                      <= (p_outbox, cur.tx, cur.position)
                ORDER BY m.outbox, m.tx, m.position
                LIMIT p_limit
                  FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*) FROM gone;
$$;

-- The inbox: the messages each consumer has processed. An idempotent
-- consumer records the message id in the transaction of its effects; a
-- redelivered message finds its id and is skipped.
CREATE TABLE loom.inbox (
    consumer    text NOT NULL,
    message_id  uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_received ON loom.inbox (consumer, received_at);

-- Records p_id for p_consumer; LM015 when it is already there (the
-- message was processed: the caller's transaction must not run again).
CREATE FUNCTION loom.inbox_mark(p_consumer text, p_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loom.inbox (consumer, message_id) VALUES (p_consumer, p_id)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % was already processed by consumer "%"',
                        p_id, p_consumer
            USING ERRCODE = 'LM015';
    END IF;
END;
$$;

-- Deletes up to p_limit entries of p_consumer older than p_window; returns
-- how many. A message redelivered after its entry expired is processed
-- again, so the window must outlast the transport's redelivery horizon.
CREATE FUNCTION loom.inbox_expire(p_consumer text, p_window interval,
                                  p_limit integer)
RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM loom.inbox i
         WHERE i.ctid IN (
               SELECT ctid FROM loom.inbox
                WHERE consumer = p_consumer
                  AND received_at < now() - p_window
                LIMIT p_limit
                  FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*) FROM gone;
$$;

-- Messages a relay could never publish: the transport refused them for
-- good (too large, a topic it cannot take) or their row is malformed.
-- Moved here with the cursor's advance, so they do not block the ones
-- behind them; `loomctl outbox dlq` lists them, redrive sends them again.
CREATE TABLE loom.outbox_dead_letters (
    outbox     text NOT NULL,
    tx         xid8 NOT NULL,
    position   bigint NOT NULL,
    topic      text NOT NULL,
    key        bytea,
    type       text,
    headers    bytea,
    payload    bytea NOT NULL,
    message_id uuid NOT NULL,
    deliver_at timestamptz,
    created_at timestamptz NOT NULL,
    error      text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (outbox, tx, position)
);

-- Moves one message of p_outbox to the dead letters with p_error.
CREATE FUNCTION loom.outbox_bury(p_outbox text, p_tx xid8, p_position bigint,
                                 p_error text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO loom.outbox_dead_letters
    SELECT outbox, tx, position, topic, key, type, headers, payload,
           message_id, deliver_at, created_at, p_error
      FROM loom.outbox
     WHERE outbox = p_outbox AND tx = p_tx AND position = p_position
    ON CONFLICT DO NOTHING;
$$;

-- Puts dead letters of p_outbox back in the outbox (all of them when
-- p_ids is NULL), as new messages with their original ids; returns how
-- many.
CREATE FUNCTION loom.outbox_redrive(p_outbox text, p_ids uuid[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_n bigint;
BEGIN
    WITH gone AS (
        DELETE FROM loom.outbox_dead_letters
         WHERE outbox = p_outbox
           AND (p_ids IS NULL OR message_id = ANY (p_ids))
        RETURNING *),
    back AS (
        INSERT INTO loom.outbox (outbox, topic, key, type, headers, payload,
                                 message_id, deliver_at)
        SELECT outbox, topic, key, type, headers, payload, message_id,
               deliver_at
          FROM gone ORDER BY tx, position
        RETURNING 1)
    SELECT count(*) INTO v_n FROM back;
    PERFORM loom.outbox_wake(p_outbox);
    RETURN v_n;
END;
$$;

-- What `loomctl outbox status` shows: per outbox, pending messages, the
-- oldest one's age, the publish rate and the active relay. An outbox with
-- messages or dead letters but no relay row yet shows too.
CREATE VIEW loom.outbox_status AS
SELECT names.outbox,
       (SELECT count(*) FROM loom.outbox o
         WHERE o.outbox = names.outbox
           AND (o.outbox, o.tx, o.position)
               > (names.outbox, COALESCE(r.tx, '0'), COALESCE(r.position, 0)))
           AS pending,
       (SELECT now() - min(o.created_at) FROM loom.outbox o
         WHERE o.outbox = names.outbox
           AND (o.outbox, o.tx, o.position)
               > (names.outbox, COALESCE(r.tx, '0'), COALESCE(r.position, 0)))
           AS oldest_age,
       COALESCE(r.published, 0) AS published,
       (SELECT count(*) FROM loom.outbox_dead_letters d
         WHERE d.outbox = names.outbox) AS dead_letters,
       COALESCE(r.rate, 0) AS rate,
       r.leader, r.leader_pid, r.leader_since, r.transport, r.heartbeat_at,
       r.failing_since, r.last_error,
       r.leader_pid IS NOT NULL
           AND EXISTS (SELECT 1 FROM pg_stat_activity a
                        WHERE a.pid = r.leader_pid) AS leader_alive
  FROM (SELECT outbox FROM loom.outbox_relays
        UNION
        SELECT DISTINCT outbox FROM loom.outbox
        UNION
        SELECT DISTINCT outbox FROM loom.outbox_dead_letters) AS names
  LEFT JOIN loom.outbox_relays r USING (outbox);
