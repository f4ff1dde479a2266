-- Eventloom schema 9: one statement for what a batch of messages writes.
--
-- A consumer that handles a delivered batch in one transaction (the inbox
-- consumer, saga participants) used to queue, per message, an inbox mark,
-- an append and an outbox write: three function calls whose fixed cost
-- (a Bind and Execute, the function's entry, its statements' executor
-- start-up) outweighed the rows they wrote (the saga benchmark spent more
-- server time in loom.append's entry than in its INSERT). These take the
-- whole batch as arrays, with the semantics of calling the one-message
-- functions in order.

-- loom.inbox_mark() for each of p_ids, in one statement: LM015 (and the
-- transaction fails) when any of them is already recorded for p_consumer,
-- or appears twice in p_ids.
CREATE FUNCTION loom.inbox_mark_many(p_consumer text, p_ids uuid[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_dup uuid;
BEGIN
    WITH ins AS (
        INSERT INTO loom.inbox (consumer, message_id)
             SELECT p_consumer, u.id FROM unnest(p_ids) AS u(id)
        ON CONFLICT DO NOTHING
        RETURNING message_id)
    SELECT u.id INTO v_dup
      FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
     WHERE u.id NOT IN (SELECT message_id FROM ins)
        OR u.ord > (SELECT min(v.ord) FROM unnest(p_ids) WITH ORDINALITY
                                            AS v(id, ord) WHERE v.id = u.id)
     ORDER BY u.ord
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'message % was already processed by consumer "%"',
                        v_dup, p_consumer
            USING ERRCODE = 'LM015';
    END IF;
END;
$$;

-- loom.append() for several streams in one statement: stream i gets
-- p_counts[i] events, expecting p_expected[i] (-2 any, -1 no stream, -4
-- stream exists, >= 0 exact version); the events are the arrays p_ids
-- ... p_metadata, stream 1's first, in order. Streams are advanced in
-- the order given (one stream may appear more than once: its entries
-- follow each other as consecutive appends would), then every event is
-- inserted by one INSERT, so positions follow the order given. Errors as
-- loom.append(): LM001 on a version conflict (DETAIL = actual version),
-- 23505 on a reused event id. Returns the number of events.
CREATE FUNCTION loom.append_many(
    p_streams         text[],
    p_expected        bigint[],
    p_counts          integer[],
    p_ids             uuid[],
    p_types           text[],
    p_schema_versions integer[],
    p_data            bytea[],
    p_metadata        bytea[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_k       integer := cardinality(p_streams);
    v_base    bigint[];           -- per entry: the version before it
    v_new     text[];             -- streams created by the fast path
    v_first   integer[] := '{}';  -- per entry: its first event's index
    v_at      integer := 1;
    v_current bigint;
    v_n       integer;
    v_woken   boolean;
    v_count   integer;
BEGIN
    IF cardinality(p_expected) <> v_k OR cardinality(p_counts) <> v_k
       OR (SELECT min(c) FROM unnest(p_counts) AS c) < 1
       OR (SELECT sum(c) FROM unnest(p_counts) AS c) <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'loom.append_many: % streams, % expected versions, '
                        '% counts and % events do not match',
                        v_k, cardinality(p_expected), cardinality(p_counts),
                        cardinality(p_ids)
            USING ERRCODE = '22023';
    END IF;
    -- Each entry's first event.
    FOR i IN 1 .. v_k LOOP
        v_first := v_first || v_at;
        v_at := v_at + p_counts[i];
    END LOOP;
    v_base := array_fill(NULL::bigint, ARRAY[v_k]);

    -- New streams (expected -1) in one statement when every entry names
    -- a stream of its own: then no entry's outcome depends on another's,
    -- and the order they are made in changes nothing.
    IF (SELECT count(DISTINCT s) FROM unnest(p_streams) AS s) = v_k THEN
        WITH ins AS (
            INSERT INTO loom.streams (stream, category, version)
                 SELECT p_streams[i], split_part(p_streams[i], '-', 1),
                        p_counts[i] - 1
                   FROM generate_subscripts(p_streams, 1) AS g(i)
                  WHERE p_expected[i] = -1
                  ORDER BY i
            ON CONFLICT (stream) DO NOTHING
            RETURNING stream)
        SELECT array_agg(stream) INTO v_new FROM ins;
        FOR i IN 1 .. v_k LOOP
            IF p_expected[i] = -1 THEN
                IF v_new IS NULL OR NOT (p_streams[i] = ANY (v_new)) THEN
                    SELECT version INTO v_current FROM loom.streams
                     WHERE stream = p_streams[i];
                    PERFORM loom.append_conflict(p_streams[i], -1,
                                                 coalesce(v_current, -1));
                END IF;
                v_base[i] := -1;
            END IF;
        END LOOP;
    END IF;

    -- The rest, one stream at a time, in order, as loom.append() does.
    FOR i IN 1 .. v_k LOOP
        CONTINUE WHEN v_base[i] IS NOT NULL;
        v_n := p_counts[i];
        LOOP
            UPDATE loom.streams SET version = version + v_n
             WHERE stream = p_streams[i]
            RETURNING version - v_n INTO v_current;
            IF FOUND THEN
                IF p_expected[i] = -1
                   OR (p_expected[i] >= 0 AND v_current <> p_expected[i]) THEN
                    PERFORM loom.append_conflict(p_streams[i], p_expected[i],
                                                 v_current);
                END IF;
                EXIT;
            END IF;
            v_current := -1;
            IF p_expected[i] >= 0 OR p_expected[i] = -4 THEN
                PERFORM loom.append_conflict(p_streams[i], p_expected[i], -1);
            END IF;
            INSERT INTO loom.streams (stream, category, version)
                 VALUES (p_streams[i], split_part(p_streams[i], '-', 1),
                         v_n - 1)
            ON CONFLICT (stream) DO NOTHING;
            EXIT WHEN FOUND;
        END LOOP;
        v_base[i] := v_current;
    END LOOP;

    -- Which entry each event belongs to: entry i's are the p_counts[i]
    -- from v_first[i] on.
    WITH map AS (
        SELECT s.i AS e, g.ord
          FROM generate_subscripts(p_streams, 1) AS s(i),
               LATERAL generate_series(v_first[s.i],
                                       v_first[s.i] + p_counts[s.i] - 1) AS g(ord)),
    ins AS (
        INSERT INTO loom.events (stream, category, version, event_id, type,
                                 schema_version, data, metadata)
        SELECT p_streams[map.e], split_part(p_streams[map.e], '-', 1),
               v_base[map.e] + 1 + (u.ord - v_first[map.e]), u.id, u.type,
               u.sv, u.data, u.meta
          FROM unnest(p_ids, p_types, p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS u(id, type, sv, data, meta, ord)
          JOIN map ON map.ord = u.ord
         ORDER BY u.ord
        RETURNING 1),
    woken AS (
        DELETE FROM loom.wakeups
         WHERE ctid IN (SELECT ctid FROM loom.wakeups
                         WHERE channel = 'loom_events'
                           FOR UPDATE SKIP LOCKED)
        RETURNING channel)
    SELECT count(*), (SELECT count(*) FROM woken) > 0
      INTO v_count, v_woken FROM ins;
    IF v_woken THEN
        PERFORM pg_notify('loom_events', '');
    END IF;
    RETURN v_count;
END;
$$;

-- Whether p_outbox holds committed messages past the relay's cursor that
-- loom.outbox_fetch() cannot return yet: it returns only those of
-- transactions older than every transaction still running (the horizon
-- that makes its order commit order). A relay whose fetch came back empty
-- asks this before it sleeps: when true, an older transaction (of any
-- kind, maybe one that never touches the outbox and so never wakes it)
-- holds them back, and the relay looks again shortly instead of waiting
-- for its poll.
CREATE FUNCTION loom.outbox_pending(p_outbox text, p_tx xid8,
                                    p_position bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM loom.outbox
                    WHERE outbox = p_outbox
                      AND (outbox, tx, position) > (p_outbox, p_tx, p_position));
$$;
