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
-- The api role must exist already: this script grants to it but never creates roles. Outside
-- the public schema the role also needs USAGE on api_schema and queue_schema, which this
-- script leaves to you because those grants open more than this one function.
--
-- Running it again is safe: the function is replaced and the grants are re-applied. EXECUTE
-- is revoked from PUBLIC, so only the api role (and superusers) can enqueue.

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
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = api_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', api_role
            USING HINT = 'Create the API role first, or name an existing one with -v api_role=<role>.';
    END IF;
    IF to_regclass(format('%I.%I', queue_schema, queue_table)) IS NULL
        OR to_regclass(format('%I.%I', queue_schema, log_table)) IS NULL THEN
        RAISE EXCEPTION 'PGQueuer tables %.% and %.% not found', queue_schema, queue_table, queue_schema, log_table
            USING HINT = 'Run "pgq install" first, or set queue_schema, queue_table and log_table.';
    END IF;
    IF pg_get_serial_sequence(format('%I.%I', queue_schema, queue_table), 'id') IS NULL THEN
        RAISE EXCEPTION 'column id of %.% takes its values from no sequence', queue_schema, queue_table;
    END IF;

    -- Table names are schema-qualified in the body so that the function does not depend on
    -- the caller's search_path (PostgREST sets it per request to the exposed schema).
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
        SECURITY INVOKER
        AS $body$
        DECLARE
            _job_id bigint;
        BEGIN
            INSERT INTO %3$I.%4$I
                (priority, entrypoint, payload, execute_after, dedupe_key, headers, status)
            VALUES
                (priority, entrypoint, payload, now() + execute_after, dedupe_key, headers, 'queued')
            RETURNING id INTO _job_id;

            INSERT INTO %3$I.%5$I (job_id, status, entrypoint, priority)
            VALUES (_job_id, 'queued', entrypoint, priority);

            RETURN _job_id;
        END;
        $body$
    $function$, api_schema, function_name, queue_schema, queue_table, log_table);
END;
$install$;

-- The id sequence is looked up rather than named, because it keeps its original name
-- (e.g. pgqueuer_id_seq) when a queue table is renamed.
SELECT pg_get_serial_sequence(format('%I.%I', :'queue_schema', :'queue_table'), 'id') AS id_sequence
\gset

REVOKE EXECUTE ON FUNCTION :"api_schema".:"function_name"(text, bytea, integer, interval, text, jsonb)
    FROM PUBLIC;
GRANT INSERT, SELECT, UPDATE ON TABLE :"queue_schema".:"queue_table" TO :"api_role";
GRANT INSERT, SELECT, UPDATE ON TABLE :"queue_schema".:"log_table" TO :"api_role";
GRANT USAGE, SELECT ON SEQUENCE :id_sequence TO :"api_role";
GRANT EXECUTE ON FUNCTION :"api_schema".:"function_name"(text, bytea, integer, interval, text, jsonb)
    TO :"api_role";

COMMIT;
