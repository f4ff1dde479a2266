-- Eventloom schema 1: the event store.
--
-- Applied by loom__migrate() inside one transaction, under the advisory
-- lock, and recorded in loom.schema_migrations. Never edit a migration
-- that has shipped: add a new numbered file instead.

CREATE SCHEMA IF NOT EXISTS loom;

-- One row per stream: the current version, so an append checks its
-- expected version with one index probe and serialises only with appends
-- to the same stream (the row lock), never with other streams.
-- Every append updates its stream's row: the free space left on each page
-- (fillfactor) lets those updates stay on the page (HOT) without touching
-- the indexes.
CREATE TABLE loom.streams (
    stream      text        PRIMARY KEY,
    category    text        NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
CREATE INDEX streams_category ON loom.streams (category, stream);

-- The events. tx is the id of the writing transaction: readers order by
-- (tx, position) and stop below the oldest running transaction, so a row
-- committed late with a small position is never skipped.
CREATE TABLE loom.events (
    position        bigint      GENERATED ALWAYS AS IDENTITY,
    tx              xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream          text        NOT NULL,
    category        text        NOT NULL,
    version         bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            bytea       NOT NULL,
    metadata        bytea,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version PRIMARY KEY (stream, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);
CREATE INDEX events_commit_order ON loom.events (tx, position);
CREATE INDEX events_category_order ON loom.events (category, tx, position);

-- History is immutable: refuse UPDATE, DELETE and TRUNCATE, whoever asks.
-- (Privileges for least-privilege roles come in a later migration.)
CREATE FUNCTION loom.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'loom.events is append-only: % refused', TG_OP
        USING ERRCODE = 'LM003',
              HINT = 'Correct history by appending a compensating event.';
END;
$$;
CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON loom.events
    FOR EACH ROW EXECUTE FUNCTION loom.refuse_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON loom.events
    FOR EACH STATEMENT EXECUTE FUNCTION loom.refuse_change();

-- The newest snapshot of each stream's aggregate state.
CREATE TABLE loom.snapshots (
    stream          text        PRIMARY KEY,
    version         bigint      NOT NULL,
    schema_version  integer     NOT NULL,
    data            bytea       NOT NULL,
    taken_at        timestamptz NOT NULL DEFAULT now()
);

-- The category of a stream: the text before the first '-'.
CREATE FUNCTION loom.category(p_stream text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN split_part(p_stream, '-', 1);

-- Consumer-group member of a stream (Message DB semantics): the stream id
-- is the text after the first '-', its cardinal id the part before any
-- '+'; a stream without '-' hashes its whole name. The first 64 bits of
-- the MD5 as a signed integer, absolute value modulo the group size.
-- abs(mod(h, n)) equals mod(abs(h), n) and cannot overflow.
CREATE FUNCTION loom.group_member(p_stream text, p_size integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN abs(mod(('x' || left(md5(split_part(
           CASE WHEN strpos(p_stream, '-') > 0
                THEN substr(p_stream, strpos(p_stream, '-') + 1)
                ELSE p_stream END, '+', 1)), 16))::bit(64)::bigint,
           p_size))::integer;

-- Raises LM001, the version conflict; DETAIL carries the actual version.
CREATE FUNCTION loom.append_conflict(p_stream text, p_expected bigint,
                                     p_current bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stream "%": expected version %, actual version %',
                    p_stream,
                    CASE p_expected WHEN -1 THEN 'no stream'
                                    WHEN -4 THEN 'stream exists'
                                    ELSE p_expected::text END,
                    CASE p_current WHEN -1 THEN 'no stream'
                                   ELSE p_current::text END
        USING ERRCODE = 'LM001', DETAIL = p_current::text;
END;
$$;

-- Is a failed append the retry of one that committed? Eventloom calls
-- this only after loom.append() failed with a conflict or a duplicate id,
-- so appends pay nothing for idempotency on the hot path. replayed is true
-- (with the original versions and positions) when every id is already in
-- p_stream, in order, at consecutive versions; false when the first id is
-- unknown (the failure stands); LM002 when the ids were used by a
-- different append.
CREATE FUNCTION loom.append_replay(p_stream text, p_ids uuid[],
                                   OUT first_version bigint,
                                   OUT last_version bigint,
                                   OUT first_position bigint,
                                   OUT last_position bigint,
                                   OUT replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_stream  text;
    v_version bigint;
    v_matches integer;
BEGIN
    replayed := false;
    SELECT e.stream, e.version INTO v_stream, v_version
      FROM loom.events e WHERE e.event_id = p_ids[1];
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT count(*), min(e.position), max(e.position)
      INTO v_matches, first_position, last_position
      FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
      JOIN loom.events e ON e.event_id = u.id
     WHERE e.stream = p_stream AND e.version = v_version + u.ord - 1;
    IF v_stream = p_stream AND v_matches = cardinality(p_ids) THEN
        first_version := v_version;
        last_version := v_version + v_matches - 1;
        replayed := true;
        RETURN;
    END IF;
    RAISE EXCEPTION 'event id % is already used by stream "%" version %',
                    p_ids[1], v_stream, v_version
        USING ERRCODE = 'LM002',
              HINT = 'Give each new event a new id; reuse ids only to retry the same append.';
END;
$$;

-- Appends events to one stream atomically with an expected-version check.
-- p_expected: -2 any, -1 no stream, -4 stream exists, >= 0 exact version.
-- Errors: LM001 version conflict (DETAIL = actual version), 23505 on
-- events_event_id when an id is reused (the caller then asks
-- loom.append_replay() whether it was a retry). The row lock taken by the
-- UPDATE serialises appends to one stream only; appends to other streams
-- run in parallel. Two statements on the hot path: the stream row and the
-- events.
CREATE FUNCTION loom.append(
    p_stream          text,
    p_expected        bigint,
    p_ids             uuid[],
    p_types           text[],
    p_schema_versions integer[],
    p_data            bytea[],
    p_metadata        bytea[],
    OUT first_version  bigint,
    OUT last_version   bigint,
    OUT first_position bigint,
    OUT last_position  bigint,
    OUT replayed       boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_n        integer := cardinality(p_ids);
    v_current  bigint;
    v_category text := split_part(p_stream, '-', 1);
BEGIN
    LOOP
        -- Advance the stream first; a failed check below raises, which
        -- rolls the advance back with everything else.
        UPDATE loom.streams SET version = version + v_n
         WHERE stream = p_stream
        RETURNING version - v_n INTO v_current;
        IF FOUND THEN
            IF p_expected = -1
               OR (p_expected >= 0 AND v_current <> p_expected) THEN
                PERFORM loom.append_conflict(p_stream, p_expected, v_current);
            END IF;
            EXIT;
        END IF;
        -- A new stream: create its row with the final version.
        v_current := -1;
        IF p_expected >= 0 OR p_expected = -4 THEN
            PERFORM loom.append_conflict(p_stream, p_expected, -1);
        END IF;
        INSERT INTO loom.streams (stream, category, version)
             VALUES (p_stream, v_category, v_n - 1)
        ON CONFLICT (stream) DO NOTHING;
        EXIT WHEN FOUND;
        -- Another transaction created the stream meanwhile: advance it.
    END LOOP;

    WITH ins AS (
        INSERT INTO loom.events (stream, category, version, event_id, type,
                                 schema_version, data, metadata)
        SELECT p_stream, v_category, v_current + u.ord, u.id, u.type, u.sv,
               u.data, u.meta
          FROM unnest(p_ids, p_types, p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS u(id, type, sv, data, meta, ord)
         ORDER BY u.ord
        RETURNING position)
    SELECT min(position), max(position)
      INTO first_position, last_position FROM ins;
    first_version := v_current + 1;
    last_version := v_current + v_n;
    replayed := false;
END;
$$;
