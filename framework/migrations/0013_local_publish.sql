-- Eventloom schema 13: a relay whose transport is the built-in topics of
-- its own database publishes in the database.
--
-- Through the transport, each batch took three transactions in a row: the
-- relay read the batch out, the topics producer wrote it back with
-- loom.topic_publish(), and the relay recorded its progress. When the
-- topics live in the outbox's database, loom.outbox_publish_local() below
-- does all three in one statement on the relay's connection: the messages
-- never leave the server, and the publish and the cursor commit together,
-- so a relay that crashes between them publishes nothing twice.
-- In `loom-bench saga` each relay hop took 16-19 ms on average, of which
-- the read, the publish and the progress were 4, 8 and 2 ms.
--
-- The function publishes exactly what the relay would: keys are hashed
-- with Kafka's murmur2 (loom.murmur2, equal to loom_murmur2(): the same
-- key lands on the same partition either way), the type column becomes
-- an "x-type" header, topics take their wake locks and partition locks as
-- the producer takes them. What only the relay's own path handles (a
-- topic that does not exist, a message too big for a topic, a header list
-- not written by loom_outbox_add) makes it publish nothing and return -1;
-- the relay then sends that batch through the transport, which
-- dead-letters what it refuses.

-- Kafka's murmur2 of p_key (seed 0x9747b28c), as a signed 32-bit integer:
-- the value loom_murmur2() returns. A product by m = 0x5bd1e995 modulo
-- 2^32 is taken from m's 16-bit halves (0x5bd1 = 23505, 0xe995 = 59797),
-- so that bigint never overflows.
CREATE FUNCTION loom.murmur2(p_key bytea) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    len integer := octet_length(p_key);
    h bigint := (2538058380 # len) & 4294967295; -- 0x9747b28c ^ len
    k bigint;
    i integer := 0;
BEGIN
    WHILE i + 4 <= len LOOP
        k := get_byte(p_key, i)::bigint
             | (get_byte(p_key, i + 1)::bigint << 8)
             | (get_byte(p_key, i + 2)::bigint << 16)
             | (get_byte(p_key, i + 3)::bigint << 24);
        k := (k * 59797 + (((k * 23505) & 65535) << 16)) & 4294967295;
        k := k # (k >> 24);
        k := (k * 59797 + (((k * 23505) & 65535) << 16)) & 4294967295;
        h := (h * 59797 + (((h * 23505) & 65535) << 16)) & 4294967295;
        h := h # k;
        i := i + 4;
    END LOOP;
    -- The tail, highest byte first, as Kafka's Java client does.
    IF len - i = 3 THEN
        h := h # (get_byte(p_key, i + 2)::bigint << 16);
    END IF;
    IF len - i >= 2 THEN
        h := h # (get_byte(p_key, i + 1)::bigint << 8);
    END IF;
    IF len - i >= 1 THEN
        h := h # get_byte(p_key, i)::bigint;
        h := (h * 59797 + (((h * 23505) & 65535) << 16)) & 4294967295;
    END IF;
    h := h # (h >> 13);
    h := (h * 59797 + (((h * 23505) & 65535) << 16)) & 4294967295;
    h := h # (h >> 15);
    RETURN (CASE WHEN h >= 2147483648 THEN h - 4294967296 ELSE h END)::integer;
END;
$$;

-- A protobuf varint.
CREATE FUNCTION loom.pb_varint(p_n bigint) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    v bytea := '\x'::bytea;
    n bigint := p_n;
BEGIN
    WHILE n >= 128 LOOP
        v := v || set_byte('\x00'::bytea, 0, ((n & 127) | 128)::integer);
        n := n >> 7;
    END LOOP;
    RETURN v || set_byte('\x00'::bytea, 0, n::integer);
END;
$$;

-- The header list the relay publishes for an outbox row: its headers
-- (loom.Metadata field 3, repeated Header {1 key, 2 value}) with "x-type"
-- = p_type added last when the row has a type; NULL when that leaves no
-- header. Appending a field to a protobuf message is appending its bytes.
CREATE FUNCTION loom.outbox_headers(p_headers bytea, p_type text)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    t bytea;
    entry bytea;
BEGIN
    IF p_type IS NULL THEN
        RETURN nullif(p_headers, '\x'::bytea);
    END IF;
    t := convert_to(p_type, 'UTF8');
    entry := '\x0a06'::bytea || convert_to('x-type', 'UTF8') || '\x12'::bytea
             || loom.pb_varint(octet_length(t)) || t;
    RETURN coalesce(p_headers, '\x'::bytea) || '\x1a'::bytea
           || loom.pb_varint(octet_length(entry)) || entry;
END;
$$;

-- Which database a connection reaches: equal on two connections exactly
-- when they reach the same database of the same running server.
CREATE FUNCTION loom.database_identity() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT current_database() || '/' || d.oid || '/'
           || extract(epoch FROM pg_postmaster_start_time())
      FROM pg_database d WHERE d.datname = current_database();
$$;

-- Publishes the next batch of p_outbox (up to p_limit messages after the
-- cursor (p_tx, p_position), in the order loom.outbox_fetch() returns
-- them) to the built-in topics of this database and moves the cursor past
-- it, as loom.outbox_advance() does: only from that cursor and only on
-- the leading relay's connection (LM016 otherwise, and nothing is
-- published). p_sticky picks the partition of keyless messages, as the
-- producer's sticky partitioner does per transaction; p_sync is the
-- synchronous_commit the transport's acks ask for ('on', 'local',
-- 'off'); p_rate goes to the relay's row as outbox_advance's does.
-- Returns the number published (0: nothing to publish yet; -1: nothing
-- published, send this batch through the transport) and the new cursor.
CREATE FUNCTION loom.outbox_publish_local(p_outbox text, p_tx xid8,
                                          p_position bigint, p_limit integer,
                                          p_sticky integer, p_sync text,
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
                              THEN loom.murmur2(o.key) & 2147483647 END
                         ORDER BY o.ord) AS hashes,
               array_agg(o.message_id ORDER BY o.ord) AS ids,
               array_agg(o.key ORDER BY o.ord) AS keys,
               array_agg(loom.outbox_headers(o.headers, o.type)
                         ORDER BY o.ord) AS headers,
               array_agg(o.payload ORDER BY o.ord) AS payloads,
               array_agg(o.deliver_at ORDER BY o.ord) AS deliver_at
          FROM unnest(v_rows) WITH ORDINALITY
               AS o(outbox, tx, position, topic, key, type, headers, payload,
                    message_id, deliver_at, created_at, ord)
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
