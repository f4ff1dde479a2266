-- Eventloom schema 19: the orchestrator's statements keep one plan each.
--
-- loom.saga_apply() runs once per batch of replies on the orchestrator's
-- connection. Schema 11 had PostgreSQL plan its statements afresh at
-- every call (plan_cache_mode = force_custom_plan), because the generic
-- plan it had kept, made while loom.saga_instances was small, joined the
-- batch to the whole table by a hash join once the table had grown (4.0
-- ms a batch after 10,000 sagas). That planning cost 55 us per saga in
-- `loom-bench saga` (pg_stat_statements with track_planning), all of it
-- on the orchestrator's one connection.
--
-- Now the function keeps one generic plan, and that plan cannot depend on
-- the table's size: with sequential scans, hash joins and merge joins
-- off inside the function, each instance of the batch is found by its
-- primary key, whether the table holds ten rows or ten million. The
-- settings apply to this function's statements only (SET on the
-- function), and no statement of it needs anything else: it writes
-- rows of the batch, and looks them up by key. The check for instances
-- that moved on compares the batch with what was written through a
-- hashed NOT IN, which the settings leave alone (an anti-join would have
-- become a nested loop over the batch twice).
--
-- The batch's read was sent unprepared (saga/replies.c), so that
-- PostgreSQL planned it for the tables of the moment: 23 us of planning
-- per saga. It is now loom.saga_load() below, with one plan. Its lookups
-- (LATERAL ... LIMIT 1 on a primary key) plan as key lookups even on
-- empty tables; the same settings make sure they stay that way.
-- `saga_plans_test` reads the plans both functions run, made on small
-- tables and used on grown ones.

-- The replies of p_replies already in p_consumer's inbox (kind 0, with
-- message_id) and the instances of p_sagas (kind 1), each one key
-- lookup: what an orchestrator needs to decide a batch of replies.
CREATE FUNCTION loom.saga_load(p_consumer text, p_replies uuid[],
                               p_sagas text[])
RETURNS TABLE (kind integer, id text, type text, def_version integer,
               state text, step integer, attempt integer, waiting text,
               command_id uuid, outbox text, data bytea, version bigint,
               message_id uuid)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    SELECT 0, NULL::text, NULL::text, NULL::integer, NULL::text,
           NULL::integer, NULL::integer, NULL::text, NULL::uuid, NULL::text,
           NULL::bytea, NULL::bigint, i.message_id
      FROM unnest(p_replies) AS u(id)
     CROSS JOIN LATERAL (SELECT x.message_id FROM loom.inbox x
                          WHERE x.consumer = p_consumer
                            AND x.message_id = u.id LIMIT 1) i
    UNION ALL
    SELECT 1, s.id, s.type, s.def_version, s.state, s.step, s.attempt,
           s.waiting, s.command_id, s.outbox, s.data, s.version, NULL
      FROM unnest(p_sagas) AS v(id)
     CROSS JOIN LATERAL (SELECT * FROM loom.saga_instances x
                          WHERE x.id = v.id LIMIT 1) s;
END;
$$;

CREATE OR REPLACE FUNCTION loom.saga_apply(p_consumer text, p_inbox uuid[],
                                p_ids text[], p_expected bigint[],
                                p_versions bigint[], p_touch boolean[],
                                p_states text[], p_steps integer[],
                                p_attempts integer[], p_waiting text[],
                                p_commands uuid[], p_sent boolean[],
                                p_deadline_ms bigint[], p_data bytea[],
                                p_errors text[], p_clear_op boolean[],
                                p_log_ids text[], p_log_kinds text[],
                                p_log_steps integer[], p_log_names text[],
                                p_log_attempts integer[], p_log_msgs uuid[],
                                p_log_details text[])
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_n bigint;
    v_id text;
BEGIN
    IF cardinality(p_inbox) > 0 THEN
        INSERT INTO loom.inbox (consumer, message_id)
        SELECT p_consumer, m FROM unnest(p_inbox) AS m
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        IF v_n <> cardinality(p_inbox) THEN
            RAISE EXCEPTION 'a reply of this batch was already processed by '
                            'consumer "%"', p_consumer
                USING ERRCODE = 'LM015';
        END IF;
    END IF;
    IF cardinality(p_ids) > 0 THEN
        WITH u AS (
            SELECT * FROM unnest(p_ids, p_expected, p_versions, p_touch,
                                 p_states, p_steps, p_attempts, p_waiting,
                                 p_commands, p_sent, p_deadline_ms, p_data,
                                 p_errors, p_clear_op)
                AS u(id, expected, version, touch, state, step, attempt,
                     waiting, command, sent, deadline_ms, data, error,
                     clear_op)),
        moved AS (
            UPDATE loom.saga_instances s
               SET state = u.state, step = u.step, attempt = u.attempt,
                   waiting = u.waiting, command_id = u.command,
                   sent_at = CASE WHEN u.sent THEN now() ELSE s.sent_at END,
                   deadline = CASE
                       WHEN s.pending_op IS NOT NULL AND NOT u.clear_op
                           THEN now()
                       WHEN u.deadline_ms IS NULL THEN NULL
                       ELSE now() + u.deadline_ms * interval '1 millisecond'
                   END,
                   claimed_by = NULL,
                   data = COALESCE(u.data, s.data),
                   version = u.version,
                   last_error = COALESCE(u.error, s.last_error),
                   pending_op = CASE WHEN u.clear_op THEN NULL
                                     ELSE s.pending_op END,
                   pending_by = CASE WHEN u.clear_op THEN NULL
                                     ELSE s.pending_by END,
                   updated_at = now(),
                   ended_at = CASE WHEN u.state IN ('RUNNING', 'COMPENSATING')
                                   THEN NULL ELSE now() END
              FROM u
             WHERE u.touch AND s.id = u.id AND s.version = u.expected
            RETURNING s.id),
        checked AS (
            SELECT s.id FROM loom.saga_instances s
              JOIN u ON s.id = u.id AND s.version = u.expected
             WHERE NOT u.touch),
        ok AS (
            SELECT id FROM moved UNION ALL SELECT id FROM checked)
        -- NOT IN: a hashed subplan (the anti-join it replaces was a
        -- nested loop here, quadratic in the batch, with hash joins off).
        SELECT min(u.id) INTO v_id
          FROM u WHERE u.id NOT IN (SELECT ok.id FROM ok);
        IF v_id IS NOT NULL THEN
            RAISE EXCEPTION 'saga "%" was advanced by another orchestrator',
                            v_id
                USING ERRCODE = 'LM023',
                      HINT = 'the orchestrator retries from the stored state';
        END IF;
    END IF;
    INSERT INTO loom.saga_log (saga_id, kind, step, step_name, attempt,
                               message_id, detail)
    SELECT l.id, l.kind, l.step, l.name, l.attempt, l.msg, l.detail
      FROM unnest(p_log_ids, p_log_kinds, p_log_steps, p_log_names,
                  p_log_attempts, p_log_msgs, p_log_details)
           WITH ORDINALITY AS l(id, kind, step, name, attempt, msg, detail,
                                ord)
     ORDER BY l.ord;
END;
$$;
