-- Eventloom schema 11: plans that follow the tables as they grow.
--
-- PostgreSQL plans a statement of a PL/pgSQL function (and a prepared
-- statement) with its parameters five times, then may keep a generic
-- plan for the session. A plan made while loom.saga_instances was nearly
-- empty joins the batch's unnested arrays to it by a sequential scan, and
-- a long-lived orchestrator session keeps that plan as the table grows:
-- loom.saga_apply() took 4-6 ms per reply batch in `loom-bench saga`
-- after some 10,000 sagas, its UPDATE scanning every instance. Planned
-- with the batch's values each time, the same UPDATE goes by the primary
-- key. The planning this costs is small against one batch of replies.
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
