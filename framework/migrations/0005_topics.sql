-- Eventloom schema 5: partitioned topic streams (the built-in transport,
-- outbox/transports/topics/).
--
-- A topic has N partitions; each partition is an ordered log with dense
-- offsets 0, 1, 2, ... Offsets are handed out under the partition row's
-- lock, which the publishing transaction holds until it commits, so
-- offset order is commit order: a consumer reading a partition from
-- offset k can never skip a message that commits later with a smaller
-- offset (the event store gets the same guarantee from its horizon).
--
-- Consumer groups: members join with topic patterns, heartbeat, and are
-- expelled after their session timeout; every change of membership (or of
-- the topics) rebalances the group in one transaction under the group
-- row's lock. Each assigned partition carries the generation at which its
-- member got it; an offset commit names both and takes a share lock on
-- the assignment row, so a member that lost the partition cannot commit
-- on it, and a rebalance that moves a partition waits until the commit in
-- flight on it has finished (the new owner then reads the committed
-- offset).
--
-- Errors raised here: LM010 unknown topic or group, LM011 bad argument,
-- LM012 fenced (the partition belongs to another member or generation),
-- LM013 unknown member (expelled: join again), LM014 topic exists.

CREATE TABLE loom.topics (
    id integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    name text PRIMARY KEY,
    partitions integer NOT NULL,
    retention_ms bigint,              -- NULL: keep forever
    retention_bytes bigint,           -- per partition; NULL: no limit
    dedup_window_ms bigint NOT NULL DEFAULT 300000, -- 0: no deduplication
    max_deliveries integer NOT NULL DEFAULT 5,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT topics_name CHECK (
        octet_length(name) BETWEEN 1 AND 249
        AND name ~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$'),
    CONSTRAINT topics_partitions CHECK (partitions BETWEEN 1 AND 4096),
    -- Durations stop at 100 years (3155760000000 ms): retention and
    -- deduplication compute now() - duration, and a longer one would put
    -- that before 4713 BC, out of timestamptz's range, failing every
    -- retention step and every publish that meets a duplicate.
    CONSTRAINT topics_retention CHECK (
        (retention_ms IS NULL OR retention_ms BETWEEN 1 AND 3155760000000)
        AND (retention_bytes IS NULL OR retention_bytes > 0)),
    CONSTRAINT topics_dedup CHECK (
        dedup_window_ms BETWEEN 0 AND 3155760000000),
    CONSTRAINT topics_deliveries CHECK (max_deliveries BETWEEN 1 AND 1000)
);

-- One row per partition: the next offset to hand out, the first offset
-- still stored (retention moves it), and the bytes ever published (each
-- message records the running total, so retention by size is a range).
CREATE TABLE loom.topic_partitions (
    topic_id integer NOT NULL REFERENCES loom.topics (id) ON DELETE CASCADE,
    partition integer NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    start_offset bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);

CREATE TABLE loom.topic_messages (
    topic_id integer NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    id uuid NOT NULL,
    key bytea,
    headers bytea,       -- protobuf: repeated Header {key, value} = 3
    payload bytea NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    deliver_at timestamptz, -- delayed: not delivered before this
    pos bigint NOT NULL,    -- the partition's byte count through this one
    PRIMARY KEY (topic_id, partition, "offset")
);

-- Deduplication looks a message id up among the topic's stored messages
-- (published within the window). An index entry per message is all it
-- costs; a table of seen ids cost a second row and its index entry per
-- message, a quarter of the producer's throughput.
CREATE INDEX topic_messages_id ON loom.topic_messages (topic_id, id);

-- Bumped whenever topics or partitions change; groups compare it with the
-- version their assignment was computed from and rebalance when behind.
CREATE TABLE loom.topic_meta (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO loom.topic_meta VALUES (true, 1);

CREATE TABLE loom.topic_groups (
    name text PRIMARY KEY,
    generation bigint NOT NULL DEFAULT 0,
    meta_version bigint NOT NULL DEFAULT 0,
    rebalanced_at timestamptz,
    CONSTRAINT topic_groups_name CHECK (octet_length(name) BETWEEN 1 AND 249)
);

CREATE TABLE loom.topic_members (
    group_name text NOT NULL REFERENCES loom.topic_groups ON DELETE CASCADE,
    member uuid NOT NULL,
    client text NOT NULL,          -- host, pid and application, for loomctl
    patterns text[] NOT NULL,
    assignor text NOT NULL,
    session_timeout_ms integer NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, member),
    CONSTRAINT topic_members_assignor CHECK (assignor IN ('range', 'roundrobin')),
    CONSTRAINT topic_members_session CHECK (
        session_timeout_ms BETWEEN 100 AND 3600000)
);

CREATE TABLE loom.topic_assignments (
    group_name text NOT NULL REFERENCES loom.topic_groups ON DELETE CASCADE,
    topic_id integer NOT NULL REFERENCES loom.topics (id) ON DELETE CASCADE,
    partition integer NOT NULL,
    member uuid NOT NULL,
    generation bigint NOT NULL, -- the group's generation when it got it
    PRIMARY KEY (group_name, topic_id, partition)
);

-- The committed offset is the next offset the group will read.
CREATE TABLE loom.topic_offsets (
    group_name text NOT NULL,
    topic_id integer NOT NULL REFERENCES loom.topics (id) ON DELETE CASCADE,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, topic_id, partition)
);

-- Messages a group must deliver again (failed, or delayed): invisible
-- until visible_at, like an SQS message after a failed receive. Fetching
-- one pushes visible_at out by the visibility timeout, so a consumer that
-- dies with it in hand gives it back.
CREATE TABLE loom.topic_retries (
    group_name text NOT NULL,
    topic_id integer NOT NULL REFERENCES loom.topics (id) ON DELETE CASCADE,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    deliveries integer NOT NULL, -- deliveries so far
    visible_at timestamptz NOT NULL,
    error text,
    PRIMARY KEY (group_name, topic_id, partition, "offset")
);
CREATE INDEX topic_retries_due ON loom.topic_retries (group_name, visible_at);

-- Every dead letter: which group gave up on which message, and whether
-- an operator re-drove it (loomctl topics dlq). The copy itself is a
-- message of the dead-letter topic "<topic>.dlq" (same partition, so
-- order per key holds there too), readable by any consumer.
CREATE TABLE loom.topic_dead_letters (
    dlq_topic_id integer NOT NULL REFERENCES loom.topics (id)
        ON DELETE CASCADE,
    dlq_partition integer NOT NULL,
    dlq_offset bigint NOT NULL,
    group_name text NOT NULL,
    topic_id integer NOT NULL REFERENCES loom.topics (id) ON DELETE CASCADE,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    deliveries integer NOT NULL,
    error text,
    dead_at timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz,
    PRIMARY KEY (dlq_topic_id, dlq_partition, dlq_offset)
);
CREATE INDEX topic_dead_letters_source
    ON loom.topic_dead_letters (topic_id, group_name);

-- RabbitMQ topic-exchange matching on words: "*" is exactly one word,
-- "#" zero or more (the C side is loom_topic_matches()).
CREATE FUNCTION loom.topic_words_match(p text[], t text[])
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    IF cardinality(p) = 0 THEN
        RETURN cardinality(t) = 0;
    END IF;
    IF p[1] = '#' THEN
        FOR i IN 0 .. cardinality(t) LOOP
            IF loom.topic_words_match(p[2:], t[i + 1:]) THEN
                RETURN true;
            END IF;
        END LOOP;
        RETURN false;
    END IF;
    IF cardinality(t) = 0 OR (p[1] <> '*' AND p[1] <> t[1]) THEN
        RETURN false;
    END IF;
    RETURN loom.topic_words_match(p[2:], t[2:]);
END
$$;

-- Whether subscribing to `pattern` includes `topic`. A pattern with a
-- wildcard never includes a dead-letter topic ("<topic>.dlq"): those are
-- read by naming them, so "orders.#" does not redeliver its own dead
-- letters.
CREATE FUNCTION loom.topic_pattern_match(pattern text, topic text)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE
        WHEN pattern !~ '(^|\.)[*#](\.|$)' THEN pattern = topic
        WHEN topic ~ '\.dlq$' THEN false
        ELSE loom.topic_words_match(string_to_array(pattern, '.'),
                                    string_to_array(topic, '.'))
    END
$$;

CREATE FUNCTION loom.topic_meta_bump()
RETURNS void
LANGUAGE sql AS $$
    UPDATE loom.topic_meta SET version = version + 1;
    SELECT pg_notify('loom_topics', '');
$$;

CREATE FUNCTION loom.topic_id(p_name text)
RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v integer;
BEGIN
    SELECT id INTO v FROM loom.topics WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'LM010',
            MESSAGE = format('topic "%s" does not exist', p_name),
            HINT = format('create it: loomctl topics create %s --partitions N',
                          p_name);
    END IF;
    RETURN v;
END
$$;

CREATE FUNCTION loom.topic_create(p_name text, p_partitions integer,
                                  p_retention_ms bigint,
                                  p_retention_bytes bigint,
                                  p_dedup_window_ms bigint,
                                  p_max_deliveries integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v integer;
BEGIN
    IF p_partitions IS NULL OR p_partitions < 1 OR p_partitions > 4096 THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('topic "%s": %s partitions', p_name,
                             coalesce(p_partitions::text, 'NULL')),
            HINT = 'a topic has 1 to 4096 partitions';
    END IF;
    IF p_name IS NULL OR octet_length(p_name) NOT BETWEEN 1 AND 249
       OR p_name !~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$' THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('bad topic name "%s"', coalesce(p_name, '')),
            HINT = 'a topic name is 1 to 249 bytes of words made of letters, '
                   'digits, "_" and "-", separated by single dots';
    END IF;
    -- Its dead-letter topic "<name>.dlq" must fit the limit too.
    IF octet_length(p_name) > 245 AND p_name !~ '\.dlq$' THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('topic "%s..." is longer than 245 bytes',
                             left(p_name, 40)),
            HINT = 'its dead-letter topic adds ".dlq" to the name, and a '
                   'name is at most 249 bytes: use a shorter name';
    END IF;
    BEGIN
        INSERT INTO loom.topics (name, partitions, retention_ms,
                                 retention_bytes, dedup_window_ms,
                                 max_deliveries)
        VALUES (p_name, p_partitions, p_retention_ms, p_retention_bytes,
                coalesce(p_dedup_window_ms, 300000),
                coalesce(p_max_deliveries, 5))
        RETURNING id INTO v;
    EXCEPTION
        WHEN unique_violation THEN
            RAISE EXCEPTION USING ERRCODE = 'LM014',
                MESSAGE = format('topic "%s" already exists', p_name),
                HINT = 'use loomctl topics alter to change it';
        WHEN check_violation THEN
            RAISE EXCEPTION USING ERRCODE = 'LM011',
                MESSAGE = format('topic "%s": %s', p_name, SQLERRM),
                HINT = 'retention and the window are positive and at '
                       'most 100 years (3155760000000 ms); max deliveries '
                       '1 to 1000';
    END;
    INSERT INTO loom.topic_partitions (topic_id, partition)
    SELECT v, g FROM generate_series(0, p_partitions - 1) g;
    PERFORM loom.topic_meta_bump();
    RETURN v;
END
$$;

-- Changes a topic. Partitions may only grow (keys then map to other
-- partitions, as in Kafka); NULL leaves a setting as it is, and a
-- retention of 0 removes the limit.
CREATE FUNCTION loom.topic_alter(p_name text, p_partitions integer,
                                 p_retention_ms bigint,
                                 p_retention_bytes bigint,
                                 p_dedup_window_ms bigint,
                                 p_max_deliveries integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t loom.topics;
BEGIN
    SELECT * INTO t FROM loom.topics WHERE id = loom.topic_id(p_name)
       FOR UPDATE;
    IF p_partitions IS NOT NULL THEN
        IF p_partitions < t.partitions OR p_partitions > 4096 THEN
            RAISE EXCEPTION USING ERRCODE = 'LM011',
                MESSAGE = format('topic "%s" has %s partitions; cannot '
                                 'change to %s', p_name, t.partitions,
                                 p_partitions),
                HINT = 'partitions can only be added, up to 4096';
        END IF;
        INSERT INTO loom.topic_partitions (topic_id, partition)
        SELECT t.id, g FROM generate_series(t.partitions, p_partitions - 1) g;
        t.partitions := p_partitions;
    END IF;
    BEGIN
        UPDATE loom.topics
           SET partitions = t.partitions,
               retention_ms = CASE WHEN p_retention_ms IS NULL THEN retention_ms
                                   ELSE nullif(p_retention_ms, 0) END,
               retention_bytes = CASE WHEN p_retention_bytes IS NULL
                                      THEN retention_bytes
                                      ELSE nullif(p_retention_bytes, 0) END,
               dedup_window_ms = coalesce(p_dedup_window_ms, dedup_window_ms),
               max_deliveries = coalesce(p_max_deliveries, max_deliveries)
         WHERE id = t.id;
    EXCEPTION WHEN check_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('topic "%s": %s', p_name, SQLERRM),
            HINT = 'retention and the window are positive and at most '
                   '100 years (3155760000000 ms); max deliveries 1 to 1000';
    END;
    PERFORM loom.topic_meta_bump();
END
$$;

-- Publishes a batch to one topic: element i of each array is message i.
-- Its partition is p_partitions[i] when not NULL (chosen by the caller);
-- else p_hashes[i] modulo the partition count when not NULL (the
-- caller's Kafka murmur2 of the key, made positive: the modulo is taken
-- here, against the partition count this transaction sees, so a producer
-- never needs to know it); else p_sticky modulo the count (keyless
-- messages: one partition per batch, the next one for the next batch).
-- Returns, per message in order, its partition and offset; a message
-- whose id was already published to the topic within the dedup window
-- gets offset -1 and is not stored again. Partition rows are locked in
-- ascending order, so concurrent publishers queue instead of
-- deadlocking.
CREATE FUNCTION loom.topic_publish(p_topic text, p_partitions integer[],
                                   p_hashes integer[], p_sticky integer,
                                   p_ids uuid[], p_keys bytea[],
                                   p_headers bytea[], p_payloads bytea[],
                                   p_deliver_at timestamptz[])
RETURNS TABLE (partition integer, "offset" bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    t loom.topics;
    n integer := cardinality(p_ids);
    parts integer[];
    bad integer;
    chan text;
BEGIN
    SELECT * INTO t FROM loom.topics WHERE name = p_topic;
    IF NOT FOUND THEN
        PERFORM loom.topic_id(p_topic);
    END IF;
    IF n IS NULL OR n = 0
       OR coalesce(cardinality(p_keys), n) <> n
       OR coalesce(cardinality(p_headers), n) <> n
       OR cardinality(p_payloads) IS DISTINCT FROM n
       OR coalesce(cardinality(p_deliver_at), n) <> n
       OR coalesce(cardinality(p_partitions), n) <> n
       OR coalesce(cardinality(p_hashes), n) <> n THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = 'topic_publish: the arrays differ in length';
    END IF;
    SELECT array_agg(CASE WHEN x.p IS NOT NULL THEN x.p
                          WHEN x.h IS NOT NULL THEN
                              (x.h & 2147483647) % t.partitions
                          ELSE abs(coalesce(p_sticky, 0) % t.partitions) END
                     ORDER BY x.ord)
      INTO parts
      FROM unnest(coalesce(p_partitions, array_fill(NULL::integer, ARRAY[n])),
                  coalesce(p_hashes, array_fill(NULL::integer, ARRAY[n])))
           WITH ORDINALITY AS x(p, h, ord);
    SELECT min(x) INTO bad FROM unnest(parts) x
     WHERE x < 0 OR x >= t.partitions;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('topic "%s" has %s partitions; no partition %s',
                             p_topic, t.partitions, bad),
            HINT = 'partitions are numbered from 0';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_ids) x WHERE x IS NULL)
       OR EXISTS (SELECT 1 FROM unnest(p_payloads) x WHERE x IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('topic "%s": a message without an id or a '
                             'payload', p_topic);
    END IF;

    PERFORM 1 FROM loom.topic_partitions tp
     WHERE tp.topic_id = t.id
       AND tp.partition IN (SELECT DISTINCT x FROM unnest(parts) x)
     ORDER BY tp.partition
       FOR NO KEY UPDATE;

    RETURN QUERY
    WITH input AS (
        SELECT i.ord, i.part, i.id, i.key, i.headers, i.payload, i.deliver_at,
               octet_length(i.payload) + coalesce(octet_length(i.key), 0)
               + coalesce(octet_length(i.headers), 0) AS size,
               row_number() OVER (PARTITION BY i.id ORDER BY i.ord) AS dup
          FROM unnest(parts, p_ids,
                      coalesce(p_keys, array_fill(NULL::bytea, ARRAY[n])),
                      coalesce(p_headers, array_fill(NULL::bytea, ARRAY[n])),
                      p_payloads,
                      coalesce(p_deliver_at,
                               array_fill(NULL::timestamptz, ARRAY[n])))
               WITH ORDINALITY
               AS i(part, id, key, headers, payload, deliver_at, ord)
    ),
    seen AS (
        -- Ids this batch may not store: published to the topic within
        -- the window. The partition locks above make the check exact for
        -- an id that always goes to one partition (a key, a resent batch);
        -- retention may forget an id before its window ends.
        -- One index probe per message (the LIMIT keeps the planner from
        -- turning this into a join that reads the topic's every id).
        SELECT i.id
          FROM input i
         CROSS JOIN LATERAL (
               SELECT 1 FROM loom.topic_messages m
                WHERE m.topic_id = t.id AND m.id = i.id
                  AND m.published_at >=
                      now() - t.dedup_window_ms * interval '1 ms'
                LIMIT 1) m
         WHERE t.dedup_window_ms > 0 AND i.dup = 1
    ),
    accepted AS (
        SELECT i.*,
               row_number() OVER (PARTITION BY i.part ORDER BY i.ord) - 1
                   AS rank,
               sum(i.size) OVER (PARTITION BY i.part ORDER BY i.ord)
                   AS run_bytes
          FROM input i
         -- Without a window every message is stored, repeated ids in one
         -- batch included (dropping those made the outcome depend on how
         -- the producer happened to batch its calls).
         WHERE t.dedup_window_ms = 0
            OR (i.dup = 1 AND i.id NOT IN (SELECT s.id FROM seen s))
    ),
    counts AS (
        SELECT a.part, count(*) AS cnt, sum(a.size) AS size
          FROM accepted a GROUP BY a.part
    ),
    bumped AS (
        UPDATE loom.topic_partitions tp
           SET next_offset = tp.next_offset + c.cnt,
               bytes = tp.bytes + c.size
          FROM counts c
         WHERE tp.topic_id = t.id AND tp.partition = c.part
        RETURNING tp.partition AS part, tp.next_offset - c.cnt AS base,
                  tp.bytes - c.size AS base_bytes
    ),
    placed AS (
        SELECT a.*, b.base + a.rank AS off, b.base_bytes + a.run_bytes AS pos
          FROM accepted a JOIN bumped b ON b.part = a.part
    ),
    stored AS (
        INSERT INTO loom.topic_messages (topic_id, partition, "offset", id,
                                         key, headers, payload, deliver_at,
                                         pos)
        SELECT t.id, p.part, p.off, p.id, p.key, p.headers, p.payload,
               p.deliver_at, p.pos
          FROM placed p
    )
    -- Matched by position in the batch, not by id: an id may be stored
    -- twice (no window), and must then report both offsets.
    SELECT i.part, coalesce(p.off, -1)
      FROM input i LEFT JOIN placed p ON p.ord = i.ord
     ORDER BY i.ord;
    -- Wake consumers only when one armed the topic's channel (schema 2).
    chan := 'loom_topic_' || t.id;
    DELETE FROM loom.wakeups
     WHERE ctid IN (SELECT ctid FROM loom.wakeups
                     WHERE channel = chan FOR UPDATE SKIP LOCKED);
    IF FOUND THEN
        PERFORM pg_notify(chan, '');
    END IF;
END
$$;

-- Computes the assignment of a group from its members and the topics
-- their patterns match, bumps the generation, and writes only what
-- changed: a partition that stays with its member keeps its generation
-- (commits in flight on it stay valid) and its row is not touched.
CREATE FUNCTION loom.group_rebalance(p_group text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    gen bigint;
    mv bigint;
    rr boolean;
    members uuid[];
    subs record;
    desired_member uuid[] := '{}';
    desired_topic integer[] := '{}';
    desired_part integer[] := '{}';
    k integer;
    m integer;
BEGIN
    SELECT version INTO mv FROM loom.topic_meta;
    UPDATE loom.topic_groups
       SET generation = generation + 1, meta_version = mv,
           rebalanced_at = now()
     WHERE name = p_group
    RETURNING generation INTO gen;

    -- Round-robin when every member asks for it, else range (Kafka lets
    -- the group agree on one protocol; the older one wins here).
    SELECT coalesce(bool_and(assignor = 'roundrobin'), false),
           coalesce(array_agg(member ORDER BY member), '{}')
      INTO rr, members
      FROM loom.topic_members WHERE group_name = p_group;
    m := cardinality(members);

    IF m > 0 AND rr THEN
        -- Kafka's RoundRobinAssignor: every partition of every topic in
        -- name order, dealt to the members in a circle, skipping members
        -- not subscribed to the partition's topic.
        k := 0;
        FOR subs IN
            SELECT t.id, t.name, g.p,
                   array_agg(mb.member ORDER BY mb.member) AS who
              FROM loom.topics t
              JOIN loom.topic_members mb ON mb.group_name = p_group
               AND EXISTS (SELECT 1 FROM unnest(mb.patterns) pt
                            WHERE loom.topic_pattern_match(pt, t.name))
             CROSS JOIN generate_series(0, t.partitions - 1) g(p)
             GROUP BY t.id, t.name, g.p
             ORDER BY t.name, g.p
        LOOP
            WHILE NOT (members[k % m + 1] = ANY (subs.who)) LOOP
                k := k + 1;
            END LOOP;
            desired_member := desired_member || members[k % m + 1];
            desired_topic := desired_topic || subs.id;
            desired_part := desired_part || subs.p;
            k := k + 1;
        END LOOP;
    ELSIF m > 0 THEN
        -- Kafka's RangeAssignor: per topic, its subscribers in member
        -- order each take a contiguous range; the first (partitions mod
        -- subscribers) take one more.
        SELECT coalesce(array_agg(member), '{}'),
               coalesce(array_agg(topic_id), '{}'),
               coalesce(array_agg(part), '{}')
          INTO desired_member, desired_topic, desired_part
          FROM (
            SELECT r.member, r.topic_id, p AS part
              FROM (SELECT mb.member, t.id AS topic_id, t.partitions AS np,
                           row_number() OVER w - 1 AS idx,
                           count(*) OVER (PARTITION BY t.id) AS cnt
                      FROM loom.topics t
                      JOIN loom.topic_members mb ON mb.group_name = p_group
                       AND EXISTS (SELECT 1 FROM unnest(mb.patterns) pt
                                    WHERE loom.topic_pattern_match(pt, t.name))
                    WINDOW w AS (PARTITION BY t.id ORDER BY mb.member)) r
             CROSS JOIN LATERAL generate_series(
                 r.idx * (r.np / r.cnt) + least(r.idx, r.np % r.cnt),
                 r.idx * (r.np / r.cnt) + least(r.idx, r.np % r.cnt)
                 + r.np / r.cnt + CASE WHEN r.idx < r.np % r.cnt THEN 1
                                       ELSE 0 END - 1) p
          ) d;
    END IF;

    DELETE FROM loom.topic_assignments a
     WHERE a.group_name = p_group
       AND NOT EXISTS (
           SELECT 1 FROM unnest(desired_member, desired_topic, desired_part)
                  AS d(member, topic_id, part)
            WHERE d.topic_id = a.topic_id AND d.part = a.partition
              AND d.member = a.member);
    INSERT INTO loom.topic_assignments (group_name, topic_id, partition,
                                        member, generation)
    SELECT p_group, d.topic_id, d.part, d.member, gen
      FROM unnest(desired_member, desired_topic, desired_part)
           AS d(member, topic_id, part)
    ON CONFLICT (group_name, topic_id, partition) DO NOTHING;
    PERFORM pg_notify('loom_group', p_group);
    RETURN gen;
END
$$;

-- Removes the group's members whose session expired; true when any was.
CREATE FUNCTION loom.group_expel(p_group text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM loom.topic_members
     WHERE group_name = p_group
       AND heartbeat_at < now() - session_timeout_ms * interval '1 ms';
    RETURN FOUND;
END
$$;

-- Joins (or re-joins) a member and rebalances. Returns the generation.
CREATE FUNCTION loom.group_join(p_group text, p_member uuid, p_client text,
                                p_patterns text[], p_assignor text,
                                p_session_timeout_ms integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF p_patterns IS NULL OR cardinality(p_patterns) = 0
       OR EXISTS (SELECT 1 FROM unnest(p_patterns) x
                   WHERE x IS NULL OR x !~ '^([A-Za-z0-9_-]+|\*|#)(\.([A-Za-z0-9_-]+|\*|#))*$') THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('group "%s": bad topic pattern in %s', p_group,
                             coalesce(p_patterns::text, 'NULL')),
            HINT = 'patterns are words separated by dots; "*" is one word, '
                   '"#" zero or more';
    END IF;
    INSERT INTO loom.topic_groups (name) VALUES (p_group)
    ON CONFLICT (name) DO NOTHING;
    PERFORM 1 FROM loom.topic_groups WHERE name = p_group FOR UPDATE;
    PERFORM loom.group_expel(p_group);
    INSERT INTO loom.topic_members AS mb (group_name, member, client,
                                          patterns, assignor,
                                          session_timeout_ms)
    VALUES (p_group, p_member, p_client, p_patterns, p_assignor,
            p_session_timeout_ms)
    ON CONFLICT (group_name, member) DO UPDATE
       SET client = EXCLUDED.client, patterns = EXCLUDED.patterns,
           assignor = EXCLUDED.assignor,
           session_timeout_ms = EXCLUDED.session_timeout_ms,
           heartbeat_at = now();
    RETURN loom.group_rebalance(p_group);
END
$$;

-- A member's heartbeat: expels expired members and rebalances when the
-- membership or the topics changed. Returns the group's generation;
-- LM013 when this member was expelled (it must join again).
CREATE FUNCTION loom.group_heartbeat(p_group text, p_member uuid)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    g loom.topic_groups;
    mv bigint;
BEGIN
    SELECT * INTO g FROM loom.topic_groups WHERE name = p_group FOR UPDATE;
    UPDATE loom.topic_members SET heartbeat_at = now()
     WHERE group_name = p_group AND member = p_member;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'LM013',
            MESSAGE = format('member %s is not in group "%s"', p_member,
                             p_group),
            DETAIL = 'its session timed out, or it left',
            HINT = 'the consumer joins again';
    END IF;
    SELECT version INTO mv FROM loom.topic_meta;
    IF loom.group_expel(p_group) OR mv <> g.meta_version THEN
        RETURN loom.group_rebalance(p_group);
    END IF;
    RETURN g.generation;
END
$$;

CREATE FUNCTION loom.group_leave(p_group text, p_member uuid)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM loom.topic_groups WHERE name = p_group FOR UPDATE;
    DELETE FROM loom.topic_members
     WHERE group_name = p_group AND member = p_member;
    IF FOUND THEN
        PERFORM loom.group_rebalance(p_group);
    END IF;
END
$$;

-- Where a group starts reading a partition it has no committed offset
-- for: 'earliest', 'latest', 'time' (the first message published at or
-- after p_time) or 'offset' (p_offset, clamped into the stored range).
CREATE FUNCTION loom.topic_start_offset(p_topic_id integer,
                                        p_partition integer, p_start text,
                                        p_time timestamptz, p_offset bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tp loom.topic_partitions;
    v bigint;
BEGIN
    SELECT * INTO tp FROM loom.topic_partitions
     WHERE topic_id = p_topic_id AND partition = p_partition;
    IF p_start = 'latest' THEN
        RETURN tp.next_offset;
    ELSIF p_start = 'time' THEN
        SELECT m."offset" INTO v FROM loom.topic_messages m
         WHERE m.topic_id = p_topic_id AND m.partition = p_partition
           AND m."offset" >= tp.start_offset AND m.published_at >= p_time
         ORDER BY m."offset" LIMIT 1;
        RETURN coalesce(v, tp.next_offset);
    ELSIF p_start = 'offset' THEN
        RETURN greatest(tp.start_offset, least(p_offset, tp.next_offset));
    END IF;
    RETURN tp.start_offset;
END
$$;

-- The member's partitions with where to read each: the committed offset,
-- moved up to the partition's first stored offset when retention removed
-- what it pointed at; a partition without one gets the start position,
-- committed at once so that it sticks across rebalances.
CREATE FUNCTION loom.group_assignment(p_group text, p_member uuid,
                                      p_start text, p_time timestamptz,
                                      p_offset bigint)
RETURNS TABLE (topic text, topic_id integer, partition integer,
               generation bigint, "offset" bigint, max_deliveries integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO loom.topic_offsets AS o (group_name, topic_id, partition,
                                         "offset")
    SELECT p_group, a.topic_id, a.partition,
           loom.topic_start_offset(a.topic_id, a.partition, p_start, p_time,
                                   p_offset)
      FROM loom.topic_assignments a
     WHERE a.group_name = p_group AND a.member = p_member
    ON CONFLICT ON CONSTRAINT topic_offsets_pkey DO NOTHING;
    RETURN QUERY
    SELECT t.name, a.topic_id, a.partition, a.generation,
           greatest(o."offset", tp.start_offset), t.max_deliveries
      FROM loom.topic_assignments a
      JOIN loom.topics t ON t.id = a.topic_id
      JOIN loom.topic_partitions tp ON tp.topic_id = a.topic_id
       AND tp.partition = a.partition
      JOIN loom.topic_offsets o ON o.group_name = a.group_name
       AND o.topic_id = a.topic_id AND o.partition = a.partition
     WHERE a.group_name = p_group AND a.member = p_member
     ORDER BY t.name, a.partition;
END
$$;

-- Fails with LM012 unless the member still owns the partition at that
-- generation; holds a share lock on the assignment until the caller's
-- transaction ends, so a rebalance cannot move the partition meanwhile.
CREATE FUNCTION loom.group_fence(p_group text, p_member uuid,
                                 p_generation bigint, p_topic_id integer,
                                 p_partition integer)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM loom.topic_assignments
     WHERE group_name = p_group AND topic_id = p_topic_id
       AND partition = p_partition AND member = p_member
       AND generation = p_generation
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'LM012',
            MESSAGE = format('group "%s": partition %s of topic %s is no '
                             'longer assigned to member %s (generation %s)',
                             p_group, p_partition, p_topic_id, p_member,
                             p_generation),
            DETAIL = 'the group rebalanced; another member owns it now',
            HINT = 'the consumer drops what it holds of the partition and '
                   'reads its new assignment';
    END IF;
END
$$;

-- Commits the group's offset of a partition (the next offset to read),
-- fenced. Offsets only move forward here; loomctl topics reset moves them
-- anywhere.
CREATE FUNCTION loom.topic_commit(p_group text, p_member uuid,
                                  p_generation bigint, p_topic_id integer,
                                  p_partition integer, p_offset bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM loom.group_fence(p_group, p_member, p_generation, p_topic_id,
                             p_partition);
    INSERT INTO loom.topic_offsets AS o (group_name, topic_id, partition,
                                         "offset")
    VALUES (p_group, p_topic_id, p_partition, p_offset)
    ON CONFLICT ON CONSTRAINT topic_offsets_pkey DO UPDATE
       SET "offset" = greatest(o."offset", EXCLUDED."offset"),
           committed_at = now();
END
$$;

-- Records that the group must deliver a message again at p_visible_at
-- (after a failure, or a delay), fenced like a commit.
CREATE FUNCTION loom.topic_retry(p_group text, p_member uuid,
                                 p_generation bigint, p_topic_id integer,
                                 p_partition integer, p_offset bigint,
                                 p_deliveries integer,
                                 p_visible_at timestamptz, p_error text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM loom.group_fence(p_group, p_member, p_generation, p_topic_id,
                             p_partition);
    INSERT INTO loom.topic_retries AS r (group_name, topic_id, partition,
                                         "offset", deliveries, visible_at,
                                         error)
    VALUES (p_group, p_topic_id, p_partition, p_offset, p_deliveries,
            p_visible_at, p_error)
    ON CONFLICT ON CONSTRAINT topic_retries_pkey DO UPDATE
       SET deliveries = EXCLUDED.deliveries,
           visible_at = EXCLUDED.visible_at, error = EXCLUDED.error;
END
$$;

-- A redelivered message is done (acknowledged or dead-lettered).
CREATE FUNCTION loom.topic_retry_done(p_group text, p_member uuid,
                                      p_generation bigint,
                                      p_topic_id integer,
                                      p_partition integer, p_offset bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM loom.group_fence(p_group, p_member, p_generation, p_topic_id,
                             p_partition);
    DELETE FROM loom.topic_retries
     WHERE group_name = p_group AND topic_id = p_topic_id
       AND partition = p_partition AND "offset" = p_offset;
END
$$;

-- Takes the group's due redeliveries on the given partitions, pushing
-- each one's visibility out by p_visibility_ms so no other fetch takes it
-- while it is in hand (a consumer that dies gives it back that way).
CREATE FUNCTION loom.topic_fetch_retries(p_group text, p_topic_ids integer[],
                                         p_partitions integer[],
                                         p_limit integer,
                                         p_visibility_ms bigint)
RETURNS TABLE (topic_id integer, partition integer, "offset" bigint,
               deliveries integer, id uuid, key bytea, headers bytea,
               payload bytea, published_at timestamptz,
               deliver_at timestamptz)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT r.topic_id, r.partition, r."offset"
          FROM loom.topic_retries r
          JOIN unnest(p_topic_ids, p_partitions) AS a(topic_id, partition)
            ON a.topic_id = r.topic_id AND a.partition = r.partition
         WHERE r.group_name = p_group AND r.visible_at <= now()
         ORDER BY r.visible_at
         LIMIT p_limit
           FOR UPDATE OF r SKIP LOCKED
    ),
    taken AS (
        UPDATE loom.topic_retries r
           SET visible_at = now() + p_visibility_ms * interval '1 ms'
          FROM due
         WHERE r.group_name = p_group AND r.topic_id = due.topic_id
           AND r.partition = due.partition AND r."offset" = due."offset"
        RETURNING r.topic_id, r.partition, r."offset", r.deliveries
    )
    SELECT k.topic_id, k.partition, k."offset", k.deliveries, m.id, m.key,
           m.headers, m.payload, m.published_at, m.deliver_at
      FROM taken k
      LEFT JOIN loom.topic_messages m ON m.topic_id = k.topic_id
       AND m.partition = k.partition AND m."offset" = k."offset"
$$;

-- Moves a group's offsets (loomctl topics reset): to the start position
-- on every partition of the topic, or only p_partition when not NULL.
-- Pending redeliveries on those partitions are dropped, and the group is
-- rebalanced so its members re-read their assignment.
CREATE FUNCTION loom.topic_reset(p_group text, p_topic text,
                                 p_partition integer, p_start text,
                                 p_time timestamptz, p_offset bigint)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    tid integer := loom.topic_id(p_topic);
    n integer;
BEGIN
    IF p_start NOT IN ('earliest', 'latest', 'time', 'offset') THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('unknown start position "%s"', p_start),
            HINT = 'earliest, latest, time or offset';
    END IF;
    INSERT INTO loom.topic_groups (name) VALUES (p_group)
    ON CONFLICT (name) DO NOTHING;
    PERFORM 1 FROM loom.topic_groups WHERE name = p_group FOR UPDATE;
    -- Members drop what they hold: every partition gets a new generation.
    -- This comes before the offsets, in the order a commit takes its locks
    -- (the assignment in group_fence(), then the offset row): the DELETE
    -- waits for a commit in flight to finish, and fences any later one.
    -- Writing the offsets first deadlocked with a commit in flight.
    DELETE FROM loom.topic_assignments
     WHERE group_name = p_group AND topic_id = tid;
    INSERT INTO loom.topic_offsets AS o (group_name, topic_id, partition,
                                         "offset")
    SELECT p_group, tid, tp.partition,
           loom.topic_start_offset(tid, tp.partition, p_start, p_time,
                                   p_offset)
      FROM loom.topic_partitions tp
     WHERE tp.topic_id = tid
       AND (p_partition IS NULL OR tp.partition = p_partition)
    ON CONFLICT ON CONSTRAINT topic_offsets_pkey DO UPDATE
       SET "offset" = EXCLUDED."offset", committed_at = now();
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'LM011',
            MESSAGE = format('topic "%s" has no partition %s', p_topic,
                             p_partition);
    END IF;
    DELETE FROM loom.topic_retries
     WHERE group_name = p_group AND topic_id = tid
       AND (p_partition IS NULL OR partition = p_partition);
    PERFORM loom.group_rebalance(p_group);
    RETURN n;
END
$$;

-- Dead-letters a message the group gave up on, fenced like a commit: a
-- copy goes to "<topic>.dlq" (created on first use with the topic's
-- partition count and no deduplication, since several groups may give up
-- on the same message) with p_headers (the original ones plus x-error,
-- x-group, x-deliveries and where it came from, built by the consumer),
-- the dead letter is recorded, and any pending redelivery is dropped.
CREATE FUNCTION loom.topic_dead_letter(p_group text, p_member uuid,
                                       p_generation bigint,
                                       p_topic_id integer,
                                       p_partition integer, p_offset bigint,
                                       p_deliveries integer, p_error text,
                                       p_headers bytea)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    t loom.topics;
    m loom.topic_messages;
    dlq text;
    dlq_id integer;
    part integer;
    off bigint;
BEGIN
    PERFORM loom.group_fence(p_group, p_member, p_generation, p_topic_id,
                             p_partition);
    SELECT * INTO t FROM loom.topics WHERE id = p_topic_id;
    SELECT * INTO m FROM loom.topic_messages
     WHERE topic_id = p_topic_id AND partition = p_partition
       AND "offset" = p_offset;
    IF NOT FOUND THEN
        -- Removed by retention meanwhile: nothing left to keep.
        DELETE FROM loom.topic_retries
         WHERE group_name = p_group AND topic_id = p_topic_id
           AND partition = p_partition AND "offset" = p_offset;
        RETURN -1;
    END IF;
    dlq := t.name || '.dlq';
    SELECT id INTO dlq_id FROM loom.topics WHERE name = dlq;
    IF NOT FOUND THEN
        BEGIN
            dlq_id := loom.topic_create(dlq, t.partitions, NULL, NULL, 0,
                                        NULL);
        EXCEPTION WHEN SQLSTATE 'LM014' THEN
            dlq_id := loom.topic_id(dlq);
        END;
    END IF;
    SELECT partitions INTO part FROM loom.topics WHERE id = dlq_id;
    part := p_partition % part;
    SELECT p."offset" INTO off
      FROM loom.topic_publish(dlq, ARRAY[part], NULL, NULL, ARRAY[m.id],
                              ARRAY[m.key], ARRAY[p_headers],
                              ARRAY[m.payload], ARRAY[NULL::timestamptz]) p;
    INSERT INTO loom.topic_dead_letters (dlq_topic_id, dlq_partition,
                                         dlq_offset, group_name, topic_id,
                                         partition, "offset", deliveries,
                                         error)
    VALUES (dlq_id, part, off, p_group, p_topic_id, p_partition, p_offset,
            p_deliveries, p_error);
    DELETE FROM loom.topic_retries
     WHERE group_name = p_group AND topic_id = p_topic_id
       AND partition = p_partition AND "offset" = p_offset;
    RETURN off;
END
$$;

-- Re-drives dead letters of p_topic (all groups, or p_group; every one
-- not yet re-driven, or only the one at p_dlq_partition/p_dlq_offset):
-- each goes back to its group as a redelivery due now, counting its
-- deliveries from zero, as SQS's redrive moves messages back to their
-- source queue. Returns how many; dead letters whose original retention
-- removed stay as they are (loomctl reports them).
CREATE FUNCTION loom.topic_redrive(p_topic text, p_group text,
                                   p_dlq_partition integer,
                                   p_dlq_offset bigint)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    tid integer := loom.topic_id(p_topic);
    n integer;
BEGIN
    WITH chosen AS (
        UPDATE loom.topic_dead_letters d SET redriven_at = now()
          FROM loom.topic_partitions tp
         WHERE d.topic_id = tid AND d.redriven_at IS NULL
           AND (p_group IS NULL OR d.group_name = p_group)
           AND (p_dlq_offset IS NULL OR (d.dlq_offset = p_dlq_offset
                AND d.dlq_partition = coalesce(p_dlq_partition, 0)))
           AND tp.topic_id = d.topic_id AND tp.partition = d.partition
           AND d."offset" >= tp.start_offset
        RETURNING d.group_name, d.topic_id, d.partition, d."offset"
    )
    INSERT INTO loom.topic_retries AS r (group_name, topic_id, partition,
                                         "offset", deliveries, visible_at,
                                         error)
    SELECT DISTINCT ON (group_name, topic_id, partition, "offset")
           group_name, topic_id, partition, "offset", 0, now(), NULL
      FROM chosen
    ON CONFLICT ON CONSTRAINT topic_retries_pkey DO UPDATE
       SET deliveries = 0, visible_at = now(), error = NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Retention, one bounded step: moves each partition's start offset past
-- what its topic keeps (by age, by size), then deletes at most p_limit
-- messages below start offsets, oldest first. Each
-- call is one short transaction; loops call it until it returns 0, so no
-- lock is held long and vacuum keeps up.
CREATE FUNCTION loom.topic_retention_step(p_limit integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := 0;
    d bigint;
BEGIN
    -- Start offsets move under the partition row's lock, which a
    -- publisher may hold: SKIP LOCKED leaves those for the next step.
    WITH due AS (
        SELECT tp.topic_id, tp.partition, t.retention_ms, t.retention_bytes,
               tp.bytes, tp.next_offset, tp.start_offset
          FROM loom.topic_partitions tp JOIN loom.topics t ON t.id = tp.topic_id
         WHERE t.retention_ms IS NOT NULL OR t.retention_bytes IS NOT NULL
           FOR NO KEY UPDATE OF tp SKIP LOCKED
    ),
    target AS (
        SELECT due.topic_id, due.partition, greatest(
                 due.start_offset,
                 CASE WHEN due.retention_ms IS NULL THEN 0 ELSE coalesce(
                   (SELECT m."offset" FROM loom.topic_messages m
                     WHERE m.topic_id = due.topic_id
                       AND m.partition = due.partition
                       AND m."offset" >= due.start_offset
                       AND m.published_at >=
                           now() - due.retention_ms * interval '1 ms'
                     ORDER BY m."offset" LIMIT 1),
                   due.next_offset) END,
                 CASE WHEN due.retention_bytes IS NULL THEN 0 ELSE coalesce(
                   (SELECT m."offset" FROM loom.topic_messages m
                     WHERE m.topic_id = due.topic_id
                       AND m.partition = due.partition
                       AND m."offset" >= due.start_offset
                       AND m.pos > due.bytes - due.retention_bytes
                     ORDER BY m."offset" LIMIT 1),
                   due.next_offset) END) AS new_start
          FROM due
    )
    UPDATE loom.topic_partitions tp SET start_offset = target.new_start
      FROM target
     WHERE tp.topic_id = target.topic_id AND tp.partition = target.partition
       AND target.new_start > tp.start_offset;

    WITH victims AS (
        SELECT m.topic_id, m.partition, m."offset"
          FROM loom.topic_partitions tp
          JOIN LATERAL (
              SELECT m.topic_id, m.partition, m."offset"
                FROM loom.topic_messages m
               WHERE m.topic_id = tp.topic_id AND m.partition = tp.partition
                 AND m."offset" < tp.start_offset
               ORDER BY m."offset" LIMIT p_limit) m ON true
         LIMIT p_limit
    )
    DELETE FROM loom.topic_messages m USING victims v
     WHERE m.topic_id = v.topic_id AND m.partition = v.partition
       AND m."offset" = v."offset";
    GET DIAGNOSTICS d = ROW_COUNT;
    n := n + d;

    DELETE FROM loom.topic_retries r
     USING loom.topic_partitions tp
     WHERE tp.topic_id = r.topic_id AND tp.partition = r.partition
       AND r."offset" < tp.start_offset;

    RETURN n;
END
$$;

-- Per partition of a group: end offset, committed offset and lag
-- (loomctl topics lag). Partitions the group never committed on show
-- NULL.
CREATE VIEW loom.topic_lag AS
SELECT o.group_name, t.name AS topic, tp.partition, tp.start_offset,
       tp.next_offset AS end_offset, o."offset" AS committed,
       tp.next_offset - greatest(o."offset", tp.start_offset) AS lag,
       a.member, o.committed_at,
       (SELECT count(*) FROM loom.topic_retries r
         WHERE r.group_name = o.group_name AND r.topic_id = tp.topic_id
           AND r.partition = tp.partition) AS retrying
  FROM loom.topic_offsets o
  JOIN loom.topic_partitions tp ON tp.topic_id = o.topic_id
   AND tp.partition = o.partition
  JOIN loom.topics t ON t.id = tp.topic_id
  LEFT JOIN loom.topic_assignments a ON a.group_name = o.group_name
   AND a.topic_id = o.topic_id AND a.partition = o.partition;
