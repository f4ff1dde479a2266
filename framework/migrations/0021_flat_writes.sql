-- Eventloom schema 21: the writers' functions without nested calls.
--
-- A PL/pgSQL function that PERFORMs another runs one more statement
-- through the executor, and the callee sets up its own frame: about
-- 20-30 us a call, measured with pg_stat_statements (track = all) under
-- pgbench. loom.saga_start() called loom.outbox_add(), which called
-- loom.outbox_wake(), which took the wake lock in a statement of its own
-- and set a flag in another: five statements and two frames for one
-- outbox row. With the row inserted and the wake-up done in place, a
-- saga's start took 141-229 us against 198-329 us (four pgbench rounds,
-- asynchronous commit); every transaction that writes to an outbox saves
-- the same frames. Nothing else changes: the same rows, the same lock
-- taken before an armed relay is looked for and held until commit, the
-- same one look per outbox and transaction. loom.outbox_wake() stays for
-- other callers.

-- Schema 18's loom.outbox_add() (with the keys' hashes), wake-up inlined.
CREATE OR REPLACE FUNCTION loom.outbox_add(p_outbox text, p_topics text[],
                                           p_keys bytea[], p_types text[],
                                           p_headers bytea[],
                                           p_payloads bytea[], p_ids uuid[],
                                           p_deliver_at timestamptz[],
                                           p_hashes integer[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_woken integer;
BEGIN
    INSERT INTO loom.outbox (outbox, topic, key, type, headers, payload,
                             message_id, deliver_at, key_hash)
    SELECT p_outbox, u.topic, u.key, u.type, u.headers, u.payload, u.id,
           u.deliver_at, CASE WHEN u.key IS NOT NULL THEN u.hash END
      FROM unnest(p_topics, p_keys, p_types, p_headers, p_payloads, p_ids,
                  p_deliver_at, p_hashes)
           WITH ORDINALITY AS u(topic, key, type, headers, payload, id,
                                deliver_at, hash, ord)
     ORDER BY u.ord;
    IF current_setting('loom.outbox_woken', true) IS DISTINCT FROM p_outbox
    THEN
        -- loom.outbox_wake(), inlined: the outbox's wake lock shared until
        -- commit (schema 8), then an armed relay woken.
        PERFORM pg_advisory_xact_lock_shared(1819242352, hashtext(p_outbox)),
                set_config('loom.outbox_woken', p_outbox, true);
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
    END IF;
END;
$$;

-- Schema 12's loom.outbox_add() (no hashes): the one above with none.
-- Only SQL written by hand calls it (loom_outbox_add() passes the
-- hashes, loom.saga_start() writes its row itself), so a second copy of
-- the insert and the wake-up is not worth the frame it saves.
CREATE OR REPLACE FUNCTION loom.outbox_add(p_outbox text, p_topics text[],
                                           p_keys bytea[], p_types text[],
                                           p_headers bytea[],
                                           p_payloads bytea[], p_ids uuid[],
                                           p_deliver_at timestamptz[])
RETURNS void
LANGUAGE sql AS $$
    SELECT loom.outbox_add(p_outbox, p_topics, p_keys, p_types, p_headers,
                           p_payloads, p_ids, p_deliver_at, NULL::integer[]);
$$;

-- Schema 7's loom.saga_start(), its outbox row inserted in place.
CREATE OR REPLACE FUNCTION loom.saga_start(p_id text, p_type text,
                                           p_def_version integer,
                                           p_outbox text, p_data bytea,
                                           p_step_name text,
                                           p_command_id uuid,
                                           p_timeout_ms bigint,
                                           p_topic text, p_msg_type text,
                                           p_headers bytea, p_payload bytea)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_woken integer;
BEGIN
    INSERT INTO loom.saga_instances (id, type, def_version, state, step,
                                     attempt, waiting, command_id, sent_at,
                                     deadline, outbox, data, version)
    VALUES (p_id, p_type, p_def_version, 'RUNNING', 0, 1, 'reply',
            p_command_id, now(),
            now() + p_timeout_ms * interval '1 millisecond', p_outbox,
            p_data, 1)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO loom.saga_log (saga_id, kind, step, step_name, attempt,
                               message_id, detail)
    VALUES (p_id, 'started', NULL, NULL, NULL, NULL,
            p_type || ' version ' || p_def_version),
           (p_id, 'command', 0, p_step_name, 1, p_command_id, p_topic);
    INSERT INTO loom.outbox (outbox, topic, key, type, headers, payload,
                             message_id)
    VALUES (p_outbox, p_topic, convert_to(p_id, 'UTF8'), p_msg_type,
            p_headers, p_payload, p_command_id);
    IF current_setting('loom.outbox_woken', true) IS DISTINCT FROM p_outbox
    THEN
        -- loom.outbox_wake(), inlined: the outbox's wake lock shared until
        -- commit (schema 8), then an armed relay woken.
        PERFORM pg_advisory_xact_lock_shared(1819242352, hashtext(p_outbox)),
                set_config('loom.outbox_woken', p_outbox, true);
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
    END IF;
    RETURN true;
END;
$$;
