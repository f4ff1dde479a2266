-- Eventloom schema 7: saga instances, their log, and the definitions the
-- orchestrators run (saga/, loom/saga.h; the state machine is documented
-- above loom_saga_state).
--
-- Every transition of an instance is one transaction: the instance row
-- (compare-and-set on `version`), its log entries, the inbox mark of the
-- reply that caused it and the next command in the outbox.

-- The definitions orchestrators registered, so tools can name steps and
-- draw diagrams without the code that defines them.
CREATE TABLE loom.saga_definitions (
    name          text NOT NULL,      -- the service's full name
    version       integer NOT NULL,
    reply_topic   text NOT NULL,
    data_type     text,               -- the saga data's protobuf full name
                                      --   (def->data->name), for
                                      --   `loomctl saga show --types`
    steps         jsonb NOT NULL,     -- [{name, participant, command, reply,
                                      --   failure, compensation, timeout_ms,
                                      --   retry{...}}], forward steps first
    diagram       text,               -- Mermaid
    source        text,               -- the .proto file
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- One row per saga.
CREATE TABLE loom.saga_instances (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    def_version  integer NOT NULL,
    state        text NOT NULL CHECK (state IN ('RUNNING', 'COMPENSATING',
                     'COMPLETED', 'COMPENSATED', 'COMPENSATION_FAILED',
                     'ABORTED')),
    -- RUNNING: the forward step in progress; COMPENSATING and
    -- COMPENSATION_FAILED: the forward step whose compensation runs.
    step         integer NOT NULL,
    attempt      integer NOT NULL,
    -- What the saga waits for until `deadline`: 'reply' (to command_id;
    -- the deadline is the step's timeout) or 'retry' (the backoff before
    -- the next attempt). NULL when final or COMPENSATION_FAILED.
    waiting      text CHECK (waiting IN ('reply', 'retry')),
    command_id   uuid,                -- the command in flight
    sent_at      timestamptz,         -- when it was sent
    deadline     timestamptz,
    claimed_by   text,                -- the orchestrator serving the
                                      -- deadline (a lease: see saga_claim)
    outbox       text NOT NULL,       -- where its commands go
    data         bytea NOT NULL,      -- the saga data (protobuf)
    version      bigint NOT NULL,     -- transitions so far
    pending_op   text CHECK (pending_op IN ('retry', 'skip', 'abort')),
    pending_by   text,                -- who asked for it
    last_error   text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz
);
-- Due work, for the orchestrators' deadline scan.
CREATE INDEX saga_instances_deadline ON loom.saga_instances (deadline)
    WHERE deadline IS NOT NULL;
-- `loomctl saga list --state S --type T`, newest first.
CREATE INDEX saga_instances_state ON loom.saga_instances
    (state, type, started_at DESC);

-- Everything that happened to a saga, in order (id), for `loomctl saga
-- show`. kind: 'started', 'command', 'reply', 'failure', 'timeout',
-- 'retry', 'compensate', 'completed', 'compensated',
-- 'compensation_failed', 'late_reply', 'operator', 'aborted'.
CREATE TABLE loom.saga_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id    text NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind       text NOT NULL,
    step       integer,       -- forward step index
    step_name  text,          -- the rpc (forward or compensation)
    attempt    integer,
    message_id uuid,          -- the command sent, or the reply received
    detail     text           -- failure code and message, who, ...
);
CREATE INDEX saga_log_saga ON loom.saga_log (saga_id, id);

-- An operator's request (loom_saga_request(), `loomctl saga retry|skip|
-- abort`): recorded on the instance and made due at once, then applied
-- by an orchestrator as a transition. Raises LM020 (no such saga), LM021
-- (the op does not apply in the saga's state; the message says which
-- do), LM022 (another request is pending).
CREATE FUNCTION loom.saga_request(p_id text, p_op text, p_who text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v loom.saga_instances;
BEGIN
    SELECT * INTO v FROM loom.saga_instances WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'saga "%" does not exist', p_id
            USING ERRCODE = 'LM020',
                  HINT = 'list sagas with: loomctl saga list';
    END IF;
    IF v.pending_op IS NOT NULL THEN
        RAISE EXCEPTION 'saga "%" already has a pending "%" request (by %)',
                        p_id, v.pending_op, COALESCE(v.pending_by, '?')
            USING ERRCODE = 'LM022',
                  HINT = 'wait for a running orchestrator to apply it';
    END IF;
    IF p_op IN ('retry', 'skip') AND v.state <> 'COMPENSATION_FAILED' THEN
        RAISE EXCEPTION 'saga "%" is %: % applies only to COMPENSATION_FAILED',
                        p_id, v.state, p_op
            USING ERRCODE = 'LM021';
    END IF;
    IF p_op = 'abort'
       AND v.state IN ('COMPLETED', 'COMPENSATED', 'ABORTED') THEN
        RAISE EXCEPTION 'saga "%" is % (final): nothing to abort', p_id,
                        v.state
            USING ERRCODE = 'LM021';
    END IF;
    IF p_op NOT IN ('retry', 'skip', 'abort') THEN
        RAISE EXCEPTION 'unknown saga request "%"', p_op
            USING ERRCODE = 'LM021', HINT = 'use retry, skip or abort';
    END IF;
    UPDATE loom.saga_instances
       SET pending_op = p_op, pending_by = p_who, deadline = now(),
           claimed_by = NULL, updated_at = now()
     WHERE id = p_id;
    PERFORM pg_notify('loom_saga', '');
END;
$$;

-- ---------------------------------------------------------------------
-- The orchestrator's statements (saga/). PL/pgSQL: their plans are cached
-- per session, where a SQL function is planned again at every call.

-- Starts saga p_id (loom_saga_start_tx): the instance (RUNNING, step 0,
-- attempt 1, waiting for the reply to p_command_id until p_timeout_ms
-- from now), its 'started' and 'command' log entries, and step 0's
-- command in the outbox, keyed by the saga id. Only when the instance is
-- new: starting an existing id does nothing and returns false, so a start
-- retried in the same transaction as its cause is one saga.
CREATE FUNCTION loom.saga_start(p_id text, p_type text, p_def_version integer,
                                p_outbox text, p_data bytea,
                                p_step_name text, p_command_id uuid,
                                p_timeout_ms bigint, p_topic text,
                                p_msg_type text, p_headers bytea,
                                p_payload bytea)
RETURNS boolean
LANGUAGE plpgsql AS $$
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
    PERFORM loom.outbox_add(p_outbox, ARRAY[p_topic],
                            ARRAY[convert_to(p_id, 'UTF8')],
                            ARRAY[p_msg_type], ARRAY[p_headers],
                            ARRAY[p_payload], ARRAY[p_command_id],
                            ARRAY[NULL::timestamptz]);
    RETURN true;
END;
$$;

-- Applies a batch of transitions decided by an orchestrator, as one
-- statement (the commands go to the outbox beside it, in the same
-- transaction):
--  * p_inbox: the replies that caused them, marked in p_consumer's inbox
--    (LM015 when one is there already: the batch was processed);
--  * one element per instance in p_ids: a compare-and-set from version
--    p_expected to p_versions writing the instance's new fields
--    (p_touch), or only the check that it is still at p_expected (a late
--    reply decided on that version). LM023 when an instance moved on:
--    another orchestrator advanced it, and nothing of the batch commits.
--    p_deadline_ms counts from now (NULL: none); p_data and p_errors NULL
--    keep the stored value; p_clear_op clears an applied operator
--    request. A pending request keeps the saga due (deadline now).
--  * the log entries, in order.
CREATE FUNCTION loom.saga_apply(p_consumer text, p_inbox uuid[],
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
LANGUAGE plpgsql AS $$
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
        SELECT min(u.id) INTO v_id
          FROM u LEFT JOIN ok ON ok.id = u.id
         WHERE ok.id IS NULL;
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

-- Claims up to p_limit due sagas of the given types and versions for
-- orchestrator p_me: their deadline moves p_lease_ms ahead (a lease, as
-- SQS's visibility timeout: the transition that follows sets a new one;
-- if p_me dies first, the saga is due again when the lease runs out) and
-- they are returned with everything needed to decide. SKIP LOCKED:
-- orchestrators scanning together take different sagas. A last row with
-- a NULL id carries next_ms, the milliseconds until the earliest
-- remaining deadline of those types (NULL: none).
CREATE FUNCTION loom.saga_claim(p_me text, p_lease_ms integer,
                                p_limit integer, p_types text[],
                                p_versions integer[])
RETURNS TABLE (id text, type text, def_version integer, state text,
               step integer, attempt integer, waiting text, command_id uuid,
               outbox text, data bytea, version bigint, pending_op text,
               pending_by text, next_ms bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE loom.saga_instances s
       SET claimed_by = p_me,
           deadline = now() + p_lease_ms * interval '1 millisecond'
     WHERE s.id IN (
           SELECT i.id FROM loom.saga_instances i
            WHERE i.deadline <= now()
              AND (i.type, i.def_version) IN (
                  SELECT * FROM unnest(p_types, p_versions))
            ORDER BY i.deadline
            LIMIT p_limit
              FOR UPDATE SKIP LOCKED)
    RETURNING s.id, s.type, s.def_version, s.state, s.step, s.attempt,
              s.waiting, s.command_id, s.outbox, s.data, s.version,
              s.pending_op, s.pending_by, NULL::bigint;
    RETURN QUERY
    SELECT NULL::text, NULL::text, NULL::integer, NULL::text, NULL::integer,
           NULL::integer, NULL::text, NULL::uuid, NULL::text, NULL::bytea,
           NULL::bigint, NULL::text, NULL::text,
           ceil(extract(epoch FROM min(i.deadline) - clock_timestamp())
                * 1000)::bigint
      FROM loom.saga_instances i
     WHERE i.deadline IS NOT NULL
       AND (i.type, i.def_version) IN (
           SELECT * FROM unnest(p_types, p_versions));
END;
$$;

-- An orchestrator that stops gives back what it claimed and did not
-- transition: due again at once, for whoever scans next.
CREATE FUNCTION loom.saga_release(p_me text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_n bigint;
BEGIN
    UPDATE loom.saga_instances
       SET claimed_by = NULL, deadline = now()
     WHERE claimed_by = p_me AND deadline IS NOT NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;
