-- Eventloom schema 8: a relay arming its wake-up and a writer adding to its
-- outbox can no longer miss each other.
--
-- A writer looks for an armed relay (loom.outbox_wake) before it commits.
-- One that looked just before the relay's arm committed, and committed
-- just after the relay's last read, woke nobody: its messages waited for
-- the relay's poll (a second by default). Now the writer takes the
-- outbox's wake lock shared before it looks and keeps it until it
-- commits, and the relay's arm takes it exclusive (outbox/relay.c): an
-- arm waits for the writers in flight, whose messages its next read then
-- finds, and a writer that comes meanwhile waits for the arm and then
-- finds the relay armed. The lock is an advisory lock of class
-- 1819242352 keyed by hashtext(outbox).
CREATE OR REPLACE FUNCTION loom.outbox_wake(p_outbox text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_woken integer;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1819242352, hashtext(p_outbox));
    WITH woken AS (
        DELETE FROM loom.wakeups
         WHERE ctid IN (SELECT ctid FROM loom.wakeups
                         WHERE channel = 'loom_outbox_' || p_outbox
                           FOR UPDATE SKIP LOCKED)
        RETURNING channel)
    SELECT count(*) INTO v_woken FROM woken;
    IF v_woken > 0 THEN
        PERFORM pg_notify('loom_outbox_' || p_outbox, '');
    END IF;
END;
$$;

-- What a relay runs to arm: the wake-up row, then the outbox's wake lock
-- exclusive until this statement's transaction ends (it runs alone).
CREATE FUNCTION loom.outbox_arm(p_outbox text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM loom.arm_wakeup('loom_outbox_' || p_outbox);
    PERFORM pg_advisory_xact_lock(1819242352, hashtext(p_outbox));
END;
$$;
