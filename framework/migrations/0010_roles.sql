-- Eventloom schema 10: least-privilege roles.
--
-- Three NOLOGIN group roles, cluster-wide (PostgreSQL roles are not per
-- database), with fixed names so that one set of login users serves every
-- Eventloom database of a cluster:
--
--   loom_admin   owns schema loom and everything in it: migrations, DDL,
--                operator repairs. Later migrations run as this role.
--   loom_writer  what services need: append events (INSERT only: no
--                UPDATE, DELETE or TRUNCATE of loom.events, no DDL, so no
--                disabling of its append-only triggers either), and the
--                rows of streams, snapshots, checkpoints, parked events,
--                projections, outbox, inbox, topics and sagas.
--   loom_reader  SELECT on every table and view, nothing else: tools,
--                dashboards, a projection's reads.
--
-- Login users get a role by membership (GRANT loom_writer TO app_user);
-- docs/operating.md "Roles and TLS" has the recipe.
--
-- No function needs SECURITY DEFINER: every function in schema loom runs
-- with its caller's rights (SECURITY INVOKER), so table privileges decide
-- what a role can do whatever function or hand-written statement it uses.
--
-- Creating a role needs CREATEROLE (or superuser). A migrator without it
-- is not refused: the database keeps working for the owner as before, a
-- WARNING says what is missing, and once someone creates the roles,
-- `SELECT loom.grant_roles()` run as the schema's owner finishes the job.
-- Run it again after any migration that adds tables or functions to give
-- them the same rights (later migrations, run as loom_admin, get them from
-- the default privileges set here without asking).

CREATE FUNCTION loom.grant_roles() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    v_role     text;
    v_can      boolean;
    v_admin    oid;
    r          record;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO v_can
      FROM pg_roles WHERE rolname = current_user;
    FOREACH v_role IN ARRAY ARRAY['loom_admin', 'loom_writer', 'loom_reader']
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role);
        IF NOT v_can THEN
            RAISE WARNING 'role % does not exist and user % may not create roles: least-privilege roles are not set up', v_role, current_user
                USING HINT = 'As a superuser: CREATE ROLE loom_admin NOLOGIN; '
                             'CREATE ROLE loom_writer NOLOGIN; CREATE ROLE '
                             'loom_reader NOLOGIN; GRANT loom_admin TO '
                             || quote_ident(current_user::text)
                             || '; then, as that user: SELECT loom.grant_roles();';
            RETURN false;
        END IF;
        -- Roles are shared by every database of the cluster: a migration
        -- of another database may create the same role at the same time.
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
    v_admin := 'loom_admin'::regrole;

    -- The migrator joins loom_admin so that it can hand it the schema.
    IF NOT pg_has_role(current_user, v_admin, 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT loom_admin TO %I', current_user);
        EXCEPTION
            WHEN unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE WARNING 'user % is not a member of loom_admin and may not join it: schema loom keeps its owner', current_user
                    USING HINT = 'As a superuser: GRANT loom_admin TO '
                                 || quote_ident(current_user::text)
                                 || '; then SELECT loom.grant_roles();';
                RETURN false;
        END;
    END IF;

    -- Ownership: the schema, then every table, view, sequence not owned
    -- by a column (those follow their table) and function in it.
    IF (SELECT nspowner FROM pg_namespace WHERE nspname = 'loom') <> v_admin
    THEN
        ALTER SCHEMA loom OWNER TO loom_admin;
    END IF;
    FOR r IN
        SELECT c.oid::regclass AS obj,
               CASE c.relkind WHEN 'v' THEN 'VIEW'
                              WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'S' THEN 'SEQUENCE'
                              WHEN 'f' THEN 'FOREIGN TABLE'
                              ELSE 'TABLE' END AS kind
          FROM pg_class c
         WHERE c.relnamespace = 'loom'::regnamespace
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND c.relowner <> v_admin
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid
                              AND d.deptype IN ('a', 'i')
                              AND c.relkind = 'S')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO loom_admin', r.kind, r.obj);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS obj FROM pg_proc p
         WHERE p.pronamespace = 'loom'::regnamespace AND p.proowner <> v_admin
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO loom_admin', r.obj);
    END LOOP;

    -- Nobody else may do anything unless granted below.
    REVOKE ALL ON SCHEMA loom FROM PUBLIC;
    REVOKE ALL ON ALL TABLES IN SCHEMA loom FROM PUBLIC;
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA loom FROM PUBLIC;
    GRANT USAGE ON SCHEMA loom TO loom_reader, loom_writer;

    -- The reader: SELECT, and the functions (they run with its rights,
    -- so those that write fail with "permission denied").
    GRANT SELECT ON ALL TABLES IN SCHEMA loom TO loom_reader, loom_writer;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA loom TO loom_reader, loom_writer;

    -- The writer: rows of every working table, minus the history. Start
    -- from nothing so that a rerun also takes back what a table lost.
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER
        ON ALL TABLES IN SCHEMA loom FROM loom_writer, loom_reader;
    FOR r IN
        SELECT c.oid::regclass AS obj, c.relname FROM pg_class c
         WHERE c.relnamespace = 'loom'::regnamespace AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('GRANT %s ON %s TO loom_writer',
                       CASE r.relname
                           -- History: appended, never changed.
                           WHEN 'events' THEN 'INSERT'
                           WHEN 'saga_log' THEN 'INSERT'
                           -- A stream's row only moves forward.
                           WHEN 'streams' THEN 'INSERT, UPDATE'
                           -- Migrations are the admin's.
                           WHEN 'schema_migrations' THEN 'SELECT'
                           ELSE 'INSERT, UPDATE, DELETE' END,
                       r.obj);
    END LOOP;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA loom TO loom_writer;

    -- What later migrations (run as loom_admin) create gets the same.
    ALTER DEFAULT PRIVILEGES FOR ROLE loom_admin
        REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
    ALTER DEFAULT PRIVILEGES FOR ROLE loom_admin IN SCHEMA loom
        GRANT EXECUTE ON FUNCTIONS TO loom_reader, loom_writer;
    ALTER DEFAULT PRIVILEGES FOR ROLE loom_admin IN SCHEMA loom
        GRANT SELECT ON TABLES TO loom_reader;
    ALTER DEFAULT PRIVILEGES FOR ROLE loom_admin IN SCHEMA loom
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO loom_writer;
    ALTER DEFAULT PRIVILEGES FOR ROLE loom_admin IN SCHEMA loom
        GRANT USAGE, SELECT ON SEQUENCES TO loom_writer;
    RETURN true;
END
$$;

SELECT loom.grant_roles();
