-- Eventloom schema 2: wake-ups for live readers.
--
-- A NOTIFY only wakes readers (DESIGN.md principle 3), but it is not free:
-- PostgreSQL serialises the commits of every transaction that notified, so
-- a NOTIFY in each append costs concurrent appenders their group commit
-- (measured: 8 connections fell to 0.40 of a raw INSERT). So appends
-- notify only when a reader is waiting for one: a reader that has caught
-- up ARMS the wake-up of its channel, then reads once more, then sleeps;
-- the first append that finds it armed disarms it and notifies. A busy
-- system, whose readers never catch up, never pays for NOTIFY; an idle one
-- pays once per wake-up. Readers keep a poll timer as well, for the rare
-- append that checked just before a reader armed and committed just after
-- its last read.

-- A row per armed channel: present means a reader waits. UNLOGGED: after
-- a crash no reader is armed, and readers re-arm when they next sleep.
-- Empty most of the time on a busy system, so the check every append
-- makes costs next to nothing.
CREATE UNLOGGED TABLE loom.wakeups (
    channel text PRIMARY KEY
);

-- Called by a reader about to sleep on LISTEN p_channel.
CREATE FUNCTION loom.arm_wakeup(p_channel text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO loom.wakeups (channel) VALUES (p_channel)
    ON CONFLICT (channel) DO NOTHING;
$$;

-- loom.append() as in schema 1, plus the wake-up at its end.
CREATE OR REPLACE FUNCTION loom.append(
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
    v_woken    boolean;
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

    -- The events, and the wake-up in the same statement (a statement of
    -- its own costs a visible share of a one-event append): disarm the
    -- channel if a reader armed it. SKIP LOCKED: when appenders race, one
    -- disarms and notifies, the others go on without waiting for it.
    WITH ins AS (
        INSERT INTO loom.events (stream, category, version, event_id, type,
                                 schema_version, data, metadata)
        SELECT p_stream, v_category, v_current + u.ord, u.id, u.type, u.sv,
               u.data, u.meta
          FROM unnest(p_ids, p_types, p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS u(id, type, sv, data, meta, ord)
         ORDER BY u.ord
        RETURNING position),
    woken AS (
        DELETE FROM loom.wakeups
         WHERE ctid IN (SELECT ctid FROM loom.wakeups
                         WHERE channel = 'loom_events'
                           FOR UPDATE SKIP LOCKED)
        RETURNING channel)
    SELECT min(position), max(position), (SELECT count(*) FROM woken) > 0
      INTO first_position, last_position, v_woken FROM ins;
    first_version := v_current + 1;
    last_version := v_current + v_n;
    replayed := false;
    IF v_woken THEN
        PERFORM pg_notify('loom_events', '');
    END IF;
END;
$$;
