-- Installs fn_pgqueuer_enqueue hardened for production: the same signature and behaviour as
-- sql/install.sql (insert the job and its log row, return the id), but the function runs with
-- its owner's rights, so the API role needs EXECUTE on it and nothing else, and it refuses
-- oversized messages and entrypoints that are not on an allow-list.
--
--   psql -X -v ON_ERROR_STOP=1 -v api_role=pgqapi -v owner_role=pgq_owner \
--        -v allowed_entrypoints='fetch,resize,report_*' -d "$DATABASE_URL" -f sql/install-hardened.sql
--
-- psql variables (defaults in brackets):
--   api_schema          [public]               schema of the function (one of PostgREST's db-schemas)
--   queue_schema        [same as api_schema]   schema of the PGQueuer tables
--   queue_table         [pgqueuer]             PGQueuer's queue table
--   log_table           [pgqueuer_log]         PGQueuer's log table
--   function_name       [fn_pgqueuer_enqueue]
--   api_role            [pgqapi]               the only role that may call the function
--   owner_role          [owner of queue_table] role the function runs as
--   max_payload_bytes   [1MB, i.e. 1048576]    largest payload, in bytes or with a unit (512kB, 4MB)
--   max_headers_bytes   [64kB, i.e. 65536]     largest headers object, measured as the JSON text
--                                              PostgreSQL prints for it (jsonb adds spaces)
--   allowed_entrypoints [empty: any]           comma-separated names, where * matches any run of
--                                              characters (report_* allows report_daily, ...), as
--                                              in the bridge's policy.entrypoints
--
--   psql -X -v ON_ERROR_STOP=1 -v api_schema=api -v queue_schema=jobs -v queue_table=myq \
--        -v log_table=myq_log -v api_role=bridge -v owner_role=pgq_owner \
--        -v max_payload_bytes=256kB -v allowed_entrypoints='fetch,resize' \
--        -d "$DATABASE_URL" -f sql/install-hardened.sql
--
-- Refused calls and what PostgREST answers (the bridge dead-letters both, with these texts):
--   payload or headers too large   413, code PT413 (RAISE SQLSTATE 'PT413')
--   entrypoint not allowed         422, code PT422 (RAISE SQLSTATE 'PT422')
-- The message says what is wrong, DETAIL gives the sizes or the allowed entrypoints, HINT what
-- to do. DETAIL shows the allow-list to whoever may call the function.
--
-- Why it is safe, and what it relies on:
--   * SECURITY DEFINER runs the body as owner_role. EXECUTE is revoked from PUBLIC and from
--     every other grantee in the same transaction that creates the function, so no session ever
--     sees a callable definer function; afterwards only api_role (and owner_role and
--     superusers) may call it. To let several roles enqueue, grant them a group role and name
--     that as api_role.
--   * search_path is fixed to pg_catalog, pg_temp (pg_temp last, so a caller's temporary
--     objects can never shadow anything) and every table is schema-qualified, so a caller
--     cannot substitute its own tables, functions or operators. Triggers on the queue table
--     run with that search_path too: PGQueuer's own trigger uses only pg_catalog.
--   * api_role's own privileges on the two tables and their id sequences are revoked (the
--     simplified grants of PGQueuer's PostgREST document give them), so it can do nothing to
--     the queue except call this function. A WARNING says so if it still has access through
--     PUBLIC or another role. It needs USAGE on api_schema only, not on queue_schema; that
--     grant is left to you.
--   * owner_role must not be a superuser in production: a flaw in the body would then have
--     the run of the whole cluster (the script warns). It needs USAGE on queue_schema, SELECT
--     and INSERT on queue_table, INSERT on log_table and USAGE on the id sequence, owned or
--     granted. A dedicated role with just those grants is the tightest choice:
--       CREATE ROLE pgq_owner NOLOGIN;
--       GRANT USAGE ON SCHEMA public TO pgq_owner;
--       GRANT SELECT, INSERT ON TABLE pgqueuer TO pgq_owner;
--       GRANT INSERT ON TABLE pgqueuer_log TO pgq_owner;
--       GRANT USAGE ON SEQUENCE pgqueuer_id_seq TO pgq_owner;
--     Whoever runs this script must be able to SET ROLE to owner_role, and owner_role needs
--     CREATE on api_schema, unless a superuser runs it. api_role must not be a member of
--     owner_role: it could then switch to it and reach the tables.
--
-- Running it again is safe: the function is replaced, its owner and grants are set again, and
-- changed limits or allow-lists take effect at commit. Running sql/install.sql afterwards
-- turns the function back into the plain one (owned by the queue table's owner, without the
-- limits and the allow-list). sql/uninstall.sql removes either (pass the same api_schema and
-- function_name).
--
-- After installing, reload PostgREST's schema cache (NOTIFY pgrst, 'reload schema').

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?queue_schema} \else \set queue_schema :api_schema \endif
\if :{?queue_table} \else \set queue_table pgqueuer \endif
\if :{?log_table} \else \set log_table pgqueuer_log \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue \endif
\if :{?api_role} \else \set api_role pgqapi \endif
\if :{?owner_role} \else \set owner_role '' \endif
\if :{?max_payload_bytes} \else \set max_payload_bytes 1MB \endif
\if :{?max_headers_bytes} \else \set max_headers_bytes 64kB \endif
\if :{?allowed_entrypoints} \else \set allowed_entrypoints '' \endif

BEGIN;

-- psql does not interpolate inside dollar quotes, so the values reach the DO block as
-- transaction-local settings.
SET LOCAL pgq_install.api_schema = :'api_schema';
SET LOCAL pgq_install.queue_schema = :'queue_schema';
SET LOCAL pgq_install.queue_table = :'queue_table';
SET LOCAL pgq_install.log_table = :'log_table';
SET LOCAL pgq_install.function_name = :'function_name';
SET LOCAL pgq_install.api_role = :'api_role';
SET LOCAL pgq_install.owner_role = :'owner_role';
SET LOCAL pgq_install.max_payload_bytes = :'max_payload_bytes';
SET LOCAL pgq_install.max_headers_bytes = :'max_headers_bytes';
SET LOCAL pgq_install.allowed_entrypoints = :'allowed_entrypoints';

DO $install$
DECLARE
    api_schema    text := current_setting('pgq_install.api_schema');
    queue_schema  text := current_setting('pgq_install.queue_schema');
    queue_table   text := current_setting('pgq_install.queue_table');
    log_table     text := current_setting('pgq_install.log_table');
    function_name text := current_setting('pgq_install.function_name');
    api_role      text := current_setting('pgq_install.api_role');
    owner_role    text := current_setting('pgq_install.owner_role');
    allowed_list  text := btrim(current_setting('pgq_install.allowed_entrypoints'));
    queue_rel     regclass;
    log_rel       regclass;
    id_sequence   text;
    log_sequence  text;
    max_payload   bigint;
    max_headers   bigint;
    setting       text;
    size_text     text;
    size          bigint;
    item          text;
    shown         text[] := '{}';
    patterns      text[] := '{}';
    fn            regprocedure;
    grantee_oid   oid;
    strays        text;
    body          text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = api_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', api_role
            USING HINT = 'Create the API role first, or name an existing one with -v api_role=<role>.';
    END IF;
    queue_rel := to_regclass(format('%I.%I', queue_schema, queue_table));
    log_rel := to_regclass(format('%I.%I', queue_schema, log_table));
    IF queue_rel IS NULL OR log_rel IS NULL THEN
        RAISE EXCEPTION 'PGQueuer tables %.% and %.% not found', queue_schema, queue_table, queue_schema, log_table
            USING HINT = 'Run "pgq install" first, or set queue_schema, queue_table and log_table.';
    END IF;
    id_sequence := pg_get_serial_sequence(queue_rel::text, 'id');
    IF id_sequence IS NULL THEN
        RAISE EXCEPTION 'column id of %.% takes its values from no sequence', queue_schema, queue_table;
    END IF;
    log_sequence := pg_get_serial_sequence(log_rel::text, 'id');

    IF owner_role = '' THEN
        SELECT r.rolname INTO owner_role FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = queue_rel;
    ELSIF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = owner_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', owner_role
            USING HINT = 'Create the owner role first (see the header of sql/install-hardened.sql), or leave owner_role unset to use the owner of the queue table.';
    END IF;
    -- pg_has_role is also true for a superuser, which could become the owner as well.
    IF pg_has_role(api_role, owner_role, 'MEMBER') THEN
        RAISE EXCEPTION 'api role "%" can act as owner role "%"', api_role, owner_role
            USING DETAIL = 'It is the same role, a member of it, or a superuser, so it could reach the queue tables directly.',
                  HINT = 'Use a separate owner role (-v owner_role=<role>) that the api role is not a member of.';
    END IF;
    IF NOT (has_schema_privilege(owner_role, queue_schema, 'USAGE')
            AND has_table_privilege(owner_role, queue_rel, 'INSERT')
            AND has_column_privilege(owner_role, queue_rel, 'id', 'SELECT')
            AND has_table_privilege(owner_role, log_rel, 'INSERT')
            AND has_sequence_privilege(owner_role, id_sequence, 'USAGE')) THEN
        RAISE EXCEPTION 'owner role "%" cannot enqueue into %.%', owner_role, queue_schema, queue_table
            USING DETAIL = format('It needs USAGE on schema %I, INSERT and SELECT (RETURNING id) on %s, INSERT on %s and USAGE on sequence %s.',
                                  queue_schema, queue_rel, log_rel, id_sequence),
                  HINT = 'Grant them to the owner role, or name a role that owns the queue tables.';
    END IF;
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = owner_role) THEN
        RAISE WARNING 'owner role "%" is a superuser: the enqueue function runs with superuser rights', owner_role
            USING HINT = 'In production name a role that only has the rights the function needs with -v owner_role=<role> (see the header of sql/install-hardened.sql).';
    END IF;

    FOREACH setting IN ARRAY ARRAY['max_payload_bytes', 'max_headers_bytes'] LOOP
        size_text := btrim(current_setting('pgq_install.' || setting));
        BEGIN
            size := pg_size_bytes(size_text);
        EXCEPTION WHEN invalid_parameter_value OR numeric_value_out_of_range THEN
            size := NULL;
        END;
        -- bytea and jsonb values cannot exceed 1GB anyway.
        IF size IS NULL OR size < 1 OR size > 1073741824 THEN
            RAISE EXCEPTION '% must be a size from 1 byte to 1GB, not "%"', setting, size_text
                USING HINT = 'Give bytes (1048576) or a size with a unit (512kB, 1MB).';
        END IF;
        IF setting = 'max_payload_bytes' THEN max_payload := size; ELSE max_headers := size; END IF;
    END LOOP;

    IF allowed_list <> '' THEN
        FOREACH item IN ARRAY string_to_array(allowed_list, ',') LOOP
            item := btrim(item);
            CONTINUE WHEN item = '';
            shown := shown || item;
            -- Everything but * is literal, so LIKE's own wildcards and escape are escaped first.
            patterns := patterns || replace(
                replace(replace(replace(item, E'\\', E'\\\\'), '%', E'\\%'), '_', E'\\_'), '*', '%');
        END LOOP;
        IF cardinality(patterns) = 0 THEN
            RAISE EXCEPTION 'allowed_entrypoints "%" names no entrypoint', allowed_list
                USING HINT = 'Leave it empty to allow any entrypoint.';
        END IF;
    END IF;

    -- Placeholders rather than format(), so the body can use format() and % freely.
    body := $body$
DECLARE
    _max_payload_bytes constant bigint := @max_payload@;
    _max_headers_bytes constant bigint := @max_headers@;
    _allowed_patterns  constant text[] := @patterns@;
    _allowed_list      constant text   := @allowed_list@;
    _function          constant text   := @function@;
    _job_id bigint;
    _size   bigint;
BEGIN
    -- RAISE SQLSTATE 'PTnnn' makes PostgREST answer with status nnn and use the message as the
    -- reason phrase, so messages hold printable ASCII only; the caller's text goes in DETAIL.
    -- A NULL entrypoint goes on to the INSERT, whose not-null error is the one callers know.
    IF entrypoint IS NOT NULL
        AND cardinality(_allowed_patterns) > 0
        AND NOT entrypoint LIKE ANY (_allowed_patterns)
    THEN
        RAISE SQLSTATE 'PT422' USING
            MESSAGE = format('entrypoint not allowed: %s',
                             regexp_replace(left(entrypoint, 100), '[^\x20-\x7e]', '?', 'g')),
            DETAIL = format('Entrypoint %s is not one of: %s.', left(quote_literal(entrypoint), 200), _allowed_list),
            HINT = 'Check the entrypoint the publisher sent (or the source''s entrypoint setting), or add it to allowed_entrypoints of sql/install-hardened.sql.';
    END IF;

    _size := octet_length(payload);
    IF _size > _max_payload_bytes THEN
        RAISE SQLSTATE 'PT413' USING
            MESSAGE = format('payload too large: %s bytes, the limit is %s bytes', _size, _max_payload_bytes),
            DETAIL = format('The job for entrypoint %s was refused by %s.', left(quote_nullable(entrypoint), 200), _function),
            HINT = 'Send less data, e.g. store large content elsewhere and enqueue a reference to it; the limit is max_payload_bytes of sql/install-hardened.sql.';
    END IF;
    _size := octet_length(headers::text);
    IF _size > _max_headers_bytes THEN
        RAISE SQLSTATE 'PT413' USING
            MESSAGE = format('headers too large: %s bytes of JSON, the limit is %s bytes', _size, _max_headers_bytes),
            DETAIL = format('The job for entrypoint %s was refused by %s.', left(quote_nullable(entrypoint), 200), _function),
            HINT = 'Keep job headers small (trace context, routing data); the limit is max_headers_bytes of sql/install-hardened.sql.';
    END IF;

    INSERT INTO @queue@
        (priority, entrypoint, payload, execute_after, dedupe_key, headers, status)
    VALUES
        (priority, entrypoint, payload, now() + execute_after, dedupe_key, headers, 'queued')
    RETURNING id INTO _job_id;

    INSERT INTO @log@ (job_id, status, entrypoint, priority)
    VALUES (_job_id, 'queued', entrypoint, priority);

    RETURN _job_id;
END;
$body$;
    body := replace(body, '@max_payload@', max_payload::text);
    body := replace(body, '@max_headers@', max_headers::text);
    body := replace(body, '@patterns@', quote_literal(patterns::text) || '::text[]');
    body := replace(body, '@allowed_list@', quote_literal(array_to_string(shown, ', ')));
    body := replace(body, '@function@', quote_literal(format('%I.%I', api_schema, function_name)));
    -- Qualified whatever this session's search_path, which regclass output is not.
    body := replace(body, '@queue@', format('%I.%I', queue_schema, queue_table));
    body := replace(body, '@log@', format('%I.%I', queue_schema, log_table));

    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION %I.%I(
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
        AS %L
    $function$, api_schema, function_name, body);

    fn := format('%I.%I(text, bytea, integer, interval, text, jsonb)', api_schema, function_name)::regprocedure;
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', fn, owner_role);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    FOR grantee_oid IN
        SELECT DISTINCT a.grantee
        FROM pg_proc p, aclexplode(p.proacl) AS a
        WHERE p.oid = fn AND a.grantee <> 0 AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %s', fn, grantee_oid::regrole);
    END LOOP;
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, api_role);
    -- REVOKE leaves grants made by other grantors in place, and those would still let roles in.
    SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, ', ')
    INTO strays
    FROM pg_proc p, aclexplode(p.proacl) AS a
    WHERE p.oid = fn AND a.grantee <> p.proowner AND a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = api_role);
    IF strays IS NOT NULL THEN
        RAISE EXCEPTION 'EXECUTE on % is still granted to %', fn, strays
            USING HINT = 'Those grants were made by another role; revoke them as that role, then run this script again.';
    END IF;

    EXECUTE format('REVOKE ALL ON TABLE %s, %s FROM %I', queue_rel, log_rel, api_role);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', id_sequence, api_role);
    IF log_sequence IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', log_sequence, api_role);
    END IF;
    IF has_table_privilege(api_role, queue_rel, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
        OR has_any_column_privilege(api_role, queue_rel, 'SELECT, INSERT, UPDATE, REFERENCES')
        OR has_table_privilege(api_role, log_rel, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
        OR has_any_column_privilege(api_role, log_rel, 'SELECT, INSERT, UPDATE, REFERENCES')
        OR has_sequence_privilege(api_role, id_sequence, 'USAGE, SELECT, UPDATE') THEN
        RAISE WARNING 'api role "%" still has privileges on the queue tables or the id sequence', api_role
            USING DETAIL = 'They come from PUBLIC or from a role it is a member of, not from direct grants.',
                  HINT = 'Revoke them there, so that the api role can only call the function.';
    END IF;
    IF NOT has_schema_privilege(api_role, api_schema, 'USAGE') THEN
        RAISE WARNING 'api role "%" has no USAGE on schema %', api_role, api_schema
            USING HINT = format('Calls will fail with 42501 until you GRANT USAGE ON SCHEMA %I TO %I.', api_schema, api_role);
    END IF;
END;
$install$;

COMMIT;
