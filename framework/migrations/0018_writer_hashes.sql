-- Eventloom schema 18: the writer hashes a message's key, not the relay.
--
-- A relay that publishes inside the database (schema 13) picks each
-- keyed message's partition from Kafka's murmur2 of its key. As
-- PL/pgSQL, loom.murmur2() takes about 10 us for a 36-byte key, on the
-- relay's connection, which publishes every message of its outbox one
-- batch after another: in `loom-bench saga` that was 60 us of the relay's
-- 400 us per saga. The writer has the key in hand and hashes it in C for
-- a few nanoseconds (loom_murmur2()), so loom_outbox_add() now stores the
-- hash beside the key and the relay uses it. Rows without one (written by
-- an INSERT of their own, by loom.saga_start() or by the outbox_add() of
-- schema 12, kept for those) get it computed by the relay as before.
--
-- The stored hash only chooses a partition when the relay publishes in
-- the database; through a transport the producer hashes the key itself.

ALTER TABLE loom.outbox ADD COLUMN key_hash integer;
COMMENT ON COLUMN loom.outbox.key_hash IS
    'loom.murmur2(key) as the writer computed it; NULL: the relay computes it';

-- loom.outbox_add() of schema 12 with p_hashes: element i is the murmur2
-- of key i (NULL for a message without a key).
CREATE FUNCTION loom.outbox_add(p_outbox text, p_topics text[],
                                p_keys bytea[], p_types text[],
                                p_headers bytea[], p_payloads bytea[],
                                p_ids uuid[], p_deliver_at timestamptz[],
                                p_hashes integer[])
RETURNS void
LANGUAGE plpgsql AS $$
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
        PERFORM loom.outbox_wake(p_outbox);
        PERFORM set_config('loom.outbox_woken', p_outbox, true);
    END IF;
END;
$$;

-- loom.outbox_publish_local() of schema 13, with the stored hash used
-- when there is one. Everything else is as it was.
CREATE OR REPLACE FUNCTION loom.outbox_publish_local(p_outbox text,
                                                     p_tx xid8,
                                                     p_position bigint,
                                                     p_limit integer,
                                                     p_sticky integer,
                                                     p_sync text,
                                                     p_rate double precision)
RETURNS TABLE (published integer, tx xid8, "position" bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_rows loom.outbox[];
    v_n integer;
    v_last loom.outbox;
    r record;
BEGIN
    -- Only the leader, from the cursor it holds, even with nothing to
    -- publish: a relay that lost its lock learns it here.
    PERFORM 1 FROM loom.outbox_relays r
      WHERE r.outbox = p_outbox AND r.tx = p_tx AND r.position = p_position
        AND r.leader_pid = pg_backend_pid();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'outbox "%": another relay moved the cursor', p_outbox
            USING ERRCODE = 'LM016',
                  HINT = 'this relay lost its leadership; it stands by';
    END IF;
    -- Read first, before this transaction has an id of its own: the read
    -- stops at the oldest transaction running, which would then be us.
    SELECT array_agg(o ORDER BY o.tx, o.position) INTO v_rows
      FROM loom.outbox_fetch(p_outbox, p_tx, p_position, p_limit) o;
    v_n := coalesce(cardinality(v_rows), 0);
    IF v_n = 0 THEN
        RETURN QUERY SELECT 0, p_tx, p_position;
        RETURN;
    END IF;
    -- The producer refuses a message over 16 MiB (LOOM_MAX_MESSAGE_BYTES,
    -- counting each header's strings and 8 bytes); 1 MiB of margin leaves
    -- every case near the limit to it.
    IF EXISTS (SELECT 1 FROM unnest(v_rows) o
                WHERE NOT EXISTS (SELECT 1 FROM loom.topics t
                                   WHERE t.name = o.topic)
                   OR octet_length(o.payload)
                      + coalesce(octet_length(o.key), 0)
                      + coalesce(octet_length(o.headers), 0)
                      + coalesce(octet_length(o.type), 0) > 15728640
                   OR (octet_length(o.headers) > 0
                       AND get_byte(o.headers, 0) <> 26)) THEN
        RETURN QUERY SELECT -1, p_tx, p_position;
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', p_sync, true);
    -- Each topic's wake lock, shared, in ascending topic id, before any
    -- topic_publish() looks for an armed consumer (as the producer does).
    PERFORM count(pg_advisory_xact_lock_shared(1819242351, t.id))
       FROM (SELECT t.id FROM loom.topics t
              WHERE t.name IN (SELECT o.topic FROM unnest(v_rows) o)
              ORDER BY t.id OFFSET 0) t;
    -- One topic_publish() per topic, by name (bytewise), as the producer
    -- orders them: publishers that lock the same topics' partitions in
    -- one order cannot deadlock. Each key's messages keep their order
    -- (they go to one topic, in outbox order).
    FOR r IN
        SELECT o.topic,
               array_agg(CASE WHEN o.key IS NOT NULL
                              THEN coalesce(o.key_hash, loom.murmur2(o.key))
                                   & 2147483647 END
                         ORDER BY o.ord) AS hashes,
               array_agg(o.message_id ORDER BY o.ord) AS ids,
               array_agg(o.key ORDER BY o.ord) AS keys,
               array_agg(loom.outbox_headers(o.headers, o.type)
                         ORDER BY o.ord) AS headers,
               array_agg(o.payload ORDER BY o.ord) AS payloads,
               array_agg(o.deliver_at ORDER BY o.ord) AS deliver_at
          FROM unnest(v_rows) WITH ORDINALITY
               AS o(outbox, tx, position, topic, key, type, headers, payload,
                    message_id, deliver_at, created_at, key_hash, ord)
         GROUP BY o.topic
         ORDER BY o.topic COLLATE "C"
    LOOP
        PERFORM count(*)
           FROM loom.topic_publish(r.topic, NULL, r.hashes, p_sticky, r.ids,
                                   r.keys, r.headers, r.payloads,
                                   r.deliver_at);
    END LOOP;
    v_last := v_rows[v_n];
    PERFORM loom.outbox_advance(p_outbox, p_tx, p_position, v_last.tx,
                                v_last.position, v_n, p_rate);
    RETURN QUERY SELECT v_n, v_last.tx, v_last.position;
END;
$$;
