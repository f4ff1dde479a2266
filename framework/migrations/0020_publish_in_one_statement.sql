-- Eventloom schema 20: a relay publishes a batch inside the database in
-- one statement, whatever the number of its topics.
--
-- loom.outbox_publish_local() (schemas 13 and 18) called
-- loom.topic_publish() once per topic of the batch. Each call is seven
-- statements, one of them a twelve-node CTE, and PostgreSQL starts each
-- statement's executor anew: about 0.3 ms a call before the first row
-- (a one-message topic_publish() took 0.33-0.40 ms in pgbench, against
-- 0.05 ms for inserting the row). In `loom-bench saga` a batch spans the
-- four topics of the saga, so the relay paid that four times a batch.
-- Draining 20,000 such messages in batches of 85 took 40-69 us a
-- message; with the statement below, 29-55 us (three rounds each).
--
-- The statement is topic_publish()'s for every topic of the batch at
-- once, with the same outcome (relay_local_test compares it with the
-- producer's): each key on the partition its murmur2 picks, keyless
-- messages on p_sticky's, per partition dense offsets and byte positions,
-- duplicates within each topic's window left out (in one batch or not),
-- partitions locked in the producers' order (topic name bytewise, then
-- partition) before the duplicate check, and consumers woken where they
-- armed a topic's channel. What it cannot publish (a topic that does not
-- exist, a message near the producer's size limit, headers not written
-- by loom_outbox_add) makes it publish nothing and return -1, as before:
-- the relay sends that batch through the transport.

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
    v_tids integer[];
    v_parts integer[];
    v_ids uuid[];
    v_keys bytea[];
    v_headers bytea[];
    v_payloads bytea[];
    v_deliver timestamptz[];
    v_wins bigint[];
    v_stored bigint;
    v_placed bigint;
    v_chans text[];
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
    -- Each message as loom.topic_publish() would take it: its topic's
    -- id, its partition (its key's murmur2, or p_sticky for a keyless
    -- one, modulo the topic's partitions), its header list with the type
    -- appended. A message whose topic does not exist, too big for the
    -- producer (16 MiB, LOOM_MAX_MESSAGE_BYTES, counting each header's
    -- strings and 8 bytes; 1 MiB of margin leaves every case near it to
    -- the producer) or with headers loom_outbox_add did not write is
    -- left out, and then the whole batch goes through the transport.
    SELECT array_agg(t.id ORDER BY o.ord),
           array_agg(CASE WHEN o.key IS NOT NULL
                          THEN (coalesce(o.key_hash, loom.murmur2(o.key))
                                & 2147483647) % t.partitions
                          ELSE abs(coalesce(p_sticky, 0) % t.partitions)
                     END ORDER BY o.ord),
           array_agg(o.message_id ORDER BY o.ord),
           array_agg(o.key ORDER BY o.ord),
           array_agg(loom.outbox_headers(o.headers, o.type) ORDER BY o.ord),
           array_agg(o.payload ORDER BY o.ord),
           array_agg(o.deliver_at ORDER BY o.ord),
           array_agg(t.dedup_window_ms ORDER BY o.ord)
      INTO v_tids, v_parts, v_ids, v_keys, v_headers, v_payloads, v_deliver,
           v_wins
      FROM unnest(v_rows) WITH ORDINALITY
           AS o(outbox, tx, position, topic, key, type, headers, payload,
                message_id, deliver_at, created_at, key_hash, ord)
      JOIN loom.topics t ON t.name = o.topic
     WHERE octet_length(o.payload) + coalesce(octet_length(o.key), 0)
           + coalesce(octet_length(o.headers), 0)
           + coalesce(octet_length(o.type), 0) <= 15728640
       AND (coalesce(octet_length(o.headers), 0) = 0
            OR get_byte(o.headers, 0) = 26);
    IF coalesce(cardinality(v_tids), 0) <> v_n THEN
        RETURN QUERY SELECT -1, p_tx, p_position;
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', p_sync, true);
    -- Each topic's wake lock, shared, in ascending topic id, before any
    -- armed consumer is looked for (as the producer takes them).
    PERFORM count(pg_advisory_xact_lock_shared(1819242351, x.t))
       FROM (SELECT DISTINCT t FROM unnest(v_tids) t ORDER BY t OFFSET 0) x;
    -- The partitions, locked as producers lock them (one
    -- loom.topic_publish() per topic, by topic name bytewise, each
    -- partition ascending), so that publishers cannot deadlock; before
    -- the duplicate check, which they make exact.
    PERFORM 1 FROM loom.topic_partitions tp
      JOIN loom.topics t ON t.id = tp.topic_id
     WHERE (tp.topic_id, tp.partition) IN
           (SELECT DISTINCT x.t, x.p FROM unnest(v_tids, v_parts) AS x(t, p))
     ORDER BY t.name COLLATE "C", tp.partition
       FOR NO KEY UPDATE OF tp;
    -- loom.topic_publish()'s statement, for every topic of the batch at
    -- once: duplicates within each topic's window are left out, offsets
    -- and byte positions follow each partition's counters.
    WITH input AS (
        SELECT i.ord, i.tid, i.part, i.id, i.key, i.headers, i.payload,
               i.deliver_at, i.win,
               octet_length(i.payload) + coalesce(octet_length(i.key), 0)
               + coalesce(octet_length(i.headers), 0) AS size,
               row_number() OVER (PARTITION BY i.tid, i.id ORDER BY i.ord)
                   AS dup
          FROM unnest(v_tids, v_parts, v_ids, v_keys, v_headers, v_payloads,
                      v_deliver, v_wins) WITH ORDINALITY
               AS i(tid, part, id, key, headers, payload, deliver_at, win,
                    ord)
    ),
    seen AS (
        SELECT i.tid, i.id
          FROM input i
         CROSS JOIN LATERAL (
               SELECT 1 FROM loom.topic_messages m
                WHERE m.topic_id = i.tid AND m.id = i.id
                  AND m.published_at >= now() - i.win * interval '1 ms'
                LIMIT 1) m
         WHERE i.win > 0 AND i.dup = 1
    ),
    accepted AS (
        SELECT i.*,
               row_number() OVER (PARTITION BY i.tid, i.part ORDER BY i.ord)
                   - 1 AS rank,
               sum(i.size) OVER (PARTITION BY i.tid, i.part ORDER BY i.ord)
                   AS run_bytes
          FROM input i
         WHERE i.win = 0
            OR (i.dup = 1
                AND (i.tid, i.id) NOT IN (SELECT s.tid, s.id FROM seen s))
    ),
    counts AS (
        SELECT a.tid, a.part, count(*) AS cnt, sum(a.size) AS size
          FROM accepted a GROUP BY a.tid, a.part
    ),
    bumped AS (
        UPDATE loom.topic_partitions tp
           SET next_offset = tp.next_offset + c.cnt,
               bytes = tp.bytes + c.size
          FROM counts c
         WHERE tp.topic_id = c.tid AND tp.partition = c.part
        RETURNING tp.topic_id AS tid, tp.partition AS part,
                  tp.next_offset - c.cnt AS base,
                  tp.bytes - c.size AS base_bytes
    ),
    placed AS (
        SELECT a.*, b.base + a.rank AS off, b.base_bytes + a.run_bytes AS pos
          FROM accepted a JOIN bumped b ON b.tid = a.tid AND b.part = a.part
    ),
    stored AS (
        INSERT INTO loom.topic_messages (topic_id, partition, "offset", id,
                                         key, headers, payload, deliver_at,
                                         pos)
        SELECT p.tid, p.part, p.off, p.id, p.key, p.headers, p.payload,
               p.deliver_at, p.pos
          FROM placed p
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM accepted)
      INTO v_stored, v_placed;
    -- Every accepted message has its partition's row: one without would
    -- have been dropped with no error.
    IF v_stored <> v_placed THEN
        RAISE EXCEPTION 'outbox "%": % of % messages found no partition',
                        p_outbox, v_placed - v_stored, v_placed
            USING ERRCODE = 'XX000';
    END IF;
    -- Wake the consumers that armed a topic's channel (schema 2).
    WITH woken AS (
        DELETE FROM loom.wakeups w
         WHERE w.ctid IN (SELECT x.ctid FROM loom.wakeups x
                           WHERE x.channel IN (SELECT 'loom_topic_' || t
                                                 FROM unnest(v_tids) t)
                             FOR UPDATE SKIP LOCKED)
        RETURNING w.channel)
    SELECT array_agg(DISTINCT channel) INTO v_chans FROM woken;
    PERFORM pg_notify(c, '') FROM unnest(v_chans) c;
    v_last := v_rows[v_n];
    PERFORM loom.outbox_advance(p_outbox, p_tx, p_position, v_last.tx,
                                v_last.position, v_n, p_rate);
    RETURN QUERY SELECT v_n, v_last.tx, v_last.position;
END;
$$;
