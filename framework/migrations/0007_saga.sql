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
