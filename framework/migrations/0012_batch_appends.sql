-- Eventloom schema 12: a participant batch's events in one statement, and
-- one outbox wake-up check per transaction.
--
-- loom.append_many() takes the events of every command of a delivered
-- batch (saga participants, saga/participant_batch.c): one function call
-- where a call of loom.append() per command cost its fixed share (a Bind
-- and Execute, the function's entry, its statements' start-up) each time;
-- in `loom-bench saga` loom.append took 0.16 ms a command, a quarter of
-- the server's time. Its statements read no table but loom.streams by
-- key, so the plans cached for the session stay good as tables grow.
-- (It first shipped in schema 9 and was withdrawn when the saga
-- latency's p99 doubled with it; that tail turned out to be the first
-- sagas of each run, started all at once into a cold server, which the
-- benchmark now leaves out as a warm-up.)

-- loom.outbox_add() looked for an armed relay on every call, though only
-- the first call of a transaction can find one: it takes the outbox's wake
-- lock shared until commit (schema 8), and a relay arming meanwhile waits
-- for that lock before its wake-up row commits. It now looks once per
-- transaction and outbox (a transaction-local setting remembers it; a
-- rolled-back savepoint forgets it with the look it undid).

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
    v_ev_streams  text[] := '{}';  -- per event: its stream
    v_ev_versions bigint[] := '{}'; -- per event: its version
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

    -- Each event's stream and version: entry i's p_counts[i] events
    -- follow its base version, in order.
    FOR i IN 1 .. v_k LOOP
        FOR j IN 1 .. p_counts[i] LOOP
            v_ev_streams := v_ev_streams || p_streams[i];
            v_ev_versions := v_ev_versions || (v_base[i] + j);
        END LOOP;
    END LOOP;
    WITH ins AS (
        INSERT INTO loom.events (stream, category, version, event_id, type,
                                 schema_version, data, metadata)
        SELECT u.stream, split_part(u.stream, '-', 1), u.version, u.id,
               u.type, u.sv, u.data, u.meta
          FROM unnest(v_ev_streams, v_ev_versions, p_ids, p_types,
                      p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY
               AS u(stream, version, id, type, sv, data, meta, ord)
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

CREATE OR REPLACE FUNCTION loom.outbox_add(p_outbox text, p_topics text[],
                                           p_keys bytea[], p_types text[],
                                           p_headers bytea[],
                                           p_payloads bytea[], p_ids uuid[],
                                           p_deliver_at timestamptz[])
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
    IF current_setting('loom.outbox_woken', true) IS DISTINCT FROM p_outbox
    THEN
        PERFORM loom.outbox_wake(p_outbox);
        PERFORM set_config('loom.outbox_woken', p_outbox, true);
    END IF;
END;
$$;
