-- Eventloom schema 11: plans that follow the tables as they grow.
--
-- PostgreSQL plans a statement of a PL/pgSQL function (and a prepared
-- statement) with its parameters five times, then may keep a generic
-- plan for the session, made for the table sizes of that moment. A
-- long-lived orchestrator session keeps it while loom.saga_instances
-- grows: in `loom-bench saga`, after some 10,000 sagas, the UPDATE of
-- loom.saga_apply() that joins the batch's unnested arrays to the
-- instances took 4.0 ms per reply batch; planned with the batch's values
-- each time it takes 1.1-1.8 ms. The planning this costs is small against
-- one batch of replies.
--
-- Only batch functions called a few times per batch get this: per-message
-- functions (loom.append, loom.outbox_add) look rows up by key with `=`,
-- whose generic plan is already an index scan, and would pay the planning
-- on every call.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'loom' AND p.proname IN ('saga_apply')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = '
                       'force_custom_plan', f);
    END LOOP;
END;
$$;
