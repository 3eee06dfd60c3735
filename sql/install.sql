-- Installs fn_pgqueuer_enqueue, the single-job enqueue function that PostgREST exposes as
-- POST /rpc/fn_pgqueuer_enqueue, and grants the API role what the call needs.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/install.sql
--
-- Every name can be changed with a psql variable (defaults in brackets):
--   api_schema    [public]              schema of the function (one of PostgREST's db-schemas)
--   queue_schema  [same as api_schema]  schema of the PGQueuer tables
--   queue_table   [pgqueuer]            PGQueuer's queue table
--   log_table     [pgqueuer_log]        PGQueuer's log table
--   function_name [fn_pgqueuer_enqueue]
--   api_role      [pgqapi]              role that may call the function
--
--   psql -X -v ON_ERROR_STOP=1 -v api_schema=api -v queue_schema=jobs -v queue_table=myq \
--        -v log_table=myq_log -v api_role=bridge -d "$DATABASE_URL" -f sql/install.sql
--
-- The function runs with the rights of the queue table's owner (SECURITY DEFINER, with a fixed
-- search_path and every name schema-qualified, so a caller cannot substitute its own objects),
-- and the api role gets EXECUTE on it and nothing else: no privilege on the queue table, the
-- log table or the id sequence. Through PostgREST a role with table privileges could read
-- every payload (GET /pgqueuer) or rewrite queued jobs (PATCH /pgqueuer); the api role can
-- only enqueue. The table and sequence privileges that earlier versions of this script (and
-- the simplified grants of PGQueuer's PostgREST document) gave the api role are revoked.
-- EXECUTE is revoked from PUBLIC, so only the api role (the owner and superusers) can enqueue.
-- For a dedicated owner role with only the rights the function needs, size limits and an
-- entrypoint allow-list, use sql/install-hardened.sql instead.
--
-- The api role must exist already: this script grants to it but never creates roles. It must
-- not be (a member of) the queue table's owner, which could reach the tables anyway. Outside
-- the public schema it also needs USAGE on api_schema, which this script leaves to you; it
-- does not need USAGE on queue_schema. Whoever runs the script must be able to SET ROLE to
-- the queue table's owner (a superuser can).
--
-- Running it again is safe: the function is replaced and the grants are re-applied.
-- sql/uninstall.sql drops the function and with it the only grant the api role was given.

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?queue_schema} \else \set queue_schema :api_schema \endif
\if :{?queue_table} \else \set queue_table pgqueuer \endif
\if :{?log_table} \else \set log_table pgqueuer_log \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue \endif
\if :{?api_role} \else \set api_role pgqapi \endif

BEGIN;

-- psql does not interpolate inside dollar quotes, so the names reach the DO block as
-- transaction-local settings.
SET LOCAL pgq_install.api_schema = :'api_schema';
SET LOCAL pgq_install.queue_schema = :'queue_schema';
SET LOCAL pgq_install.queue_table = :'queue_table';
SET LOCAL pgq_install.log_table = :'log_table';
SET LOCAL pgq_install.function_name = :'function_name';
SET LOCAL pgq_install.api_role = :'api_role';

DO $install$
DECLARE
    api_schema    text := current_setting('pgq_install.api_schema');
    queue_schema  text := current_setting('pgq_install.queue_schema');
    queue_table   text := current_setting('pgq_install.queue_table');
    log_table     text := current_setting('pgq_install.log_table');
    function_name text := current_setting('pgq_install.function_name');
    api_role      text := current_setting('pgq_install.api_role');
    queue_rel     regclass := to_regclass(format('%I.%I', queue_schema, queue_table));
    log_rel       regclass := to_regclass(format('%I.%I', queue_schema, log_table));
    owner_role    text;
    fn            regprocedure;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = api_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', api_role
            USING HINT = 'Create the API role first, or name an existing one with -v api_role=<role>.';
    END IF;
    IF queue_rel IS NULL OR log_rel IS NULL THEN
        RAISE EXCEPTION 'PGQueuer tables %.% and %.% not found', queue_schema, queue_table, queue_schema, log_table
            USING HINT = 'Run "pgq install" first, or set queue_schema, queue_table and log_table.';
    END IF;
    IF pg_get_serial_sequence(queue_rel::text, 'id') IS NULL THEN
        RAISE EXCEPTION 'column id of %.% takes its values from no sequence', queue_schema, queue_table;
    END IF;
    SELECT r.rolname INTO owner_role FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = queue_rel;
    -- pg_has_role is also true for a superuser.
    IF pg_has_role(api_role, owner_role, 'MEMBER') THEN
        RAISE EXCEPTION 'api role "%" can act as %, the owner of the queue tables', api_role, owner_role
            USING DETAIL = 'It could reach the tables directly, whatever this script grants.',
                  HINT = 'Name a role for PostgREST that does not own the tables, or use sql/install-hardened.sql with a separate owner_role.';
    END IF;

    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION %1$I.%2$I(
            entrypoint    text,
            payload       bytea    DEFAULT NULL,
            priority      integer  DEFAULT 0,
            execute_after interval DEFAULT '0'::interval,
            dedupe_key    text     DEFAULT NULL,
            headers       jsonb    DEFAULT NULL
        ) RETURNS bigint
        LANGUAGE plpgsql
        VOLATILE
        SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS $body$
        DECLARE
            _job_id bigint;
        BEGIN
            INSERT INTO %3$s
                (priority, entrypoint, payload, execute_after, dedupe_key, headers, status)
            VALUES
                (priority, entrypoint, payload, now() + execute_after, dedupe_key, headers, 'queued')
            RETURNING id INTO _job_id;

            INSERT INTO %4$s (job_id, status, entrypoint, priority)
            VALUES (_job_id, 'queued', entrypoint, priority);

            RETURN _job_id;
        END;
        $body$
    $function$, api_schema, function_name, format('%I.%I', queue_schema, queue_table), format('%I.%I', queue_schema, log_table));

    fn := format('%I.%I(text, bytea, integer, interval, text, jsonb)', api_schema, function_name)::regprocedure;
    -- Created and restricted in one transaction, so no session ever sees a callable definer
    -- function with PUBLIC's EXECUTE on it.
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', fn, owner_role);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, api_role);
    EXECUTE format('REVOKE ALL ON TABLE %s, %s FROM %I', queue_rel, log_rel, api_role);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', pg_get_serial_sequence(queue_rel::text, 'id'), api_role);
    IF has_table_privilege(api_role, queue_rel, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
        OR has_table_privilege(api_role, log_rel, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') THEN
        RAISE WARNING 'api role "%" still has privileges on % or %', api_role, queue_rel, log_rel
            USING DETAIL = 'They come from PUBLIC or from a role it is a member of, not from direct grants.',
                  HINT = 'Revoke them there, so that the api role can only call the function.';
    END IF;
END;
$install$;

COMMIT;
