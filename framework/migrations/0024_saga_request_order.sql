-- Eventloom schema 24: an operator's request is checked against the
-- saga's state before its pending request.
--
-- loom.saga_request() (schema 7) refused any request while another was
-- pending, so `retry` on a RUNNING saga with a pending abort was told to
-- wait (LM022, LOOM_EBUSY) for a request that would never make it
-- valid. The request itself is checked first now (unknown op, a state
-- it does not apply to: LM021, LOOM_EINVAL), then whether one is
-- pending. The outcome of a valid request is unchanged.

CREATE OR REPLACE FUNCTION loom.saga_request(p_id text, p_op text, p_who text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v loom.saga_instances;
BEGIN
    IF p_op IS NULL OR p_op NOT IN ('retry', 'skip', 'abort') THEN
        RAISE EXCEPTION 'unknown saga request "%"', p_op
            USING ERRCODE = 'LM021', HINT = 'use retry, skip or abort';
    END IF;
    SELECT * INTO v FROM loom.saga_instances WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'saga "%" does not exist', p_id
            USING ERRCODE = 'LM020',
                  HINT = 'list sagas with: loomctl saga list';
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
    IF v.pending_op IS NOT NULL THEN
        RAISE EXCEPTION 'saga "%" already has a pending "%" request (by %)',
                        p_id, v.pending_op, COALESCE(v.pending_by, '?')
            USING ERRCODE = 'LM022',
                  HINT = 'wait for a running orchestrator to apply it';
    END IF;
    UPDATE loom.saga_instances
       SET pending_op = p_op, pending_by = p_who, deadline = now(),
           claimed_by = NULL, updated_at = now()
     WHERE id = p_id;
    PERFORM pg_notify('loom_saga', '');
END;
$$;
