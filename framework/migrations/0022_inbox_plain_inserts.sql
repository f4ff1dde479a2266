-- Eventloom schema 22: a batch's inbox marks as plain inserts.
--
-- loom.inbox_mark_many() (schema 9) and loom.saga_apply() inserted a
-- batch's message ids with ON CONFLICT DO NOTHING and then compared the
-- count: for each row PostgreSQL first looks for a conflict in the
-- primary key, inserts with a speculative token, then confirms it, which
-- is one more index descent and one more WAL record per message (6 of a
-- 3-step saga's 130). A plain insert does one descent, and meets a
-- processed message as a unique violation, which the functions catch and
-- raise as LM015, as before: the consumer then handles the batch one
-- message at a time. The handler costs a subtransaction per batch, not
-- per message. For 24 ids: 234-326 us against 331-422 us a call (four
-- pgbench rounds, asynchronous commit). The single loom.inbox_mark()
-- keeps ON CONFLICT: for one row the subtransaction would cost what the
-- plain insert saves.

-- loom.inbox_mark() for each of p_ids, in one statement: LM015 (and the
-- transaction fails) when any of them is already recorded for p_consumer,
-- or appears twice in p_ids.
CREATE OR REPLACE FUNCTION loom.inbox_mark_many(p_consumer text,
                                                p_ids uuid[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loom.inbox (consumer, message_id)
         SELECT p_consumer, u.id FROM unnest(p_ids) AS u(id);
EXCEPTION WHEN unique_violation THEN
    -- Which ones is for loom.inbox_mark() to say: the consumer then
    -- handles the batch's messages one by one.
    RAISE EXCEPTION 'a message of a batch of % was already processed by '
                    'consumer "%" (or repeated in the batch)',
                    cardinality(p_ids), p_consumer
        USING ERRCODE = 'LM015';
END;
$$;

-- Schema 19's loom.saga_apply(), its inbox marks a plain insert.
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
    v_id text;
BEGIN
    IF cardinality(p_inbox) > 0 THEN
        BEGIN
            INSERT INTO loom.inbox (consumer, message_id)
            SELECT p_consumer, m FROM unnest(p_inbox) AS m;
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'a reply of this batch was already processed by '
                            'consumer "%"', p_consumer
                USING ERRCODE = 'LM015';
        END;
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
