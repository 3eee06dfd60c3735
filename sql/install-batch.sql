-- Installs fn_pgqueuer_enqueue_batch, the bulk enqueue function that PostgREST exposes as
-- POST /rpc/fn_pgqueuer_enqueue_batch, and grants the API role what the call needs.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/install-batch.sql
--
-- Every name can be changed with a psql variable (defaults in brackets), as for sql/install.sql:
--   api_schema    [public]                     schema of the function (one of PostgREST's db-schemas)
--   queue_schema  [same as api_schema]         schema of the PGQueuer tables
--   queue_table   [pgqueuer]                   PGQueuer's queue table
--   log_table     [pgqueuer_log]               PGQueuer's log table
--   function_name [fn_pgqueuer_enqueue_batch]
--   api_role      [pgqapi]                     role that may call the function
--
--   psql -X -v ON_ERROR_STOP=1 -v api_schema=api -v queue_schema=jobs -v queue_table=myq \
--        -v log_table=myq_log -v api_role=bridge -d "$DATABASE_URL" -f sql/install-batch.sql
--
-- The call takes one JSON array of job objects, each with the keys of the single function
-- (entrypoint required; payload, priority, execute_after, dedupe_key, headers optional):
--
--   POST /rpc/fn_pgqueuer_enqueue_batch
--   {"jobs": [{"entrypoint": "fetch", "payload": "\\x68656c6c6f", "dedupe_key": "k1"},
--             {"entrypoint": "fetch", "priority": 5, "execute_after": "10 seconds",
--              "headers": {"otel": {"traceparent": "00-..."}}}]}
--
-- One array of objects rather than parallel arrays of fields, so a job's fields cannot be
-- paired with another job's. All jobs and their pgqueuer_log rows are inserted by one
-- statement, and the answer has one result per element, in input order:
--
--   [{"id": 1041}, {"duplicate": true}]
--
-- {"duplicate": true} means the job's dedupe_key is already held by a queued or picked job,
-- or by an earlier element of the same call; the job is skipped, as PGQueuer's own "on
-- conflict skip" enqueue does, instead of failing the call. Ids are bigint and printed with
-- all their digits. An empty array gives [] and touches nothing.
--
-- Values are converted by PostgreSQL's input functions, as PostgREST converts the single
-- function's arguments: "\\x00ff" is two bytes, "10 seconds", "PT10S" and 10 are ten
-- seconds, "7" and 7 are priority 7. An omitted priority or execute_after takes the default
-- (0, no delay); an omitted or null payload, dedupe_key or headers is NULL. entrypoint,
-- payload and dedupe_key must be JSON strings (or null where allowed): for a number or an
-- object, jsonb would pass on its own rendering (1e2 as 100, objects re-spaced) rather than
-- the text that was sent.
--
-- One bad element refuses the whole call and nothing is enqueued. The message starts with the
-- element's index (counting from 0) and field, so a caller can isolate or drop that element,
-- and DETAIL repeats the index. Every element's shape is checked before any value, so a bad
-- shape anywhere is reported before a bad value:
--
--   bad shape (P0001, HTTP 400):
--     jobs[7]: expected an object, got string
--     jobs[7]: unknown key "foo" (a job takes entrypoint, payload, ...)
--     jobs[7].entrypoint: missing
--     jobs[7].entrypoint: expected a string, got number
--     jobs[7].payload: expected a string or null, got object         (dedupe_key likewise)
--     jobs[7].priority: must not be null (leave it out for ...)      (execute_after likewise)
--     jobs[7].headers: expected an object or null, got array
--   bad value (the input function's SQLSTATE, the one the single function gives; HTTP 400):
--     jobs[7].execute_after: invalid input syntax for type interval: "ten seconds"     22007
--       (22015 for an interval out of range, 22008 when now() + it is past the last timestamp)
--     jobs[7].priority: value "3000000000" is out of range for type integer            22003
--       (22P02 for 5.5, true or "high")
--     jobs[7].payload: invalid hexadecimal digit: "Z"                                  22023
--       (22023 too for an odd number of hex digits, 22P02 for a stray backslash)
--   jobs not an array (22023, HTTP 400):
--     jobs must be a JSON array of job objects, got object
--
-- Like sql/install.sql the function runs with the rights of the queue table's owner (SECURITY
-- DEFINER, fixed search_path, every name schema-qualified) and the api role gets EXECUTE on it
-- (revoked from PUBLIC) and nothing else: the table and sequence privileges that earlier
-- versions of these scripts gave it are revoked, so through PostgREST it can enqueue but not
-- read or change the queue. The api role must exist already and must not be (a member of) the
-- queue table's owner; outside the public schema it needs USAGE on api_schema, which this
-- script leaves to you. Whoever runs the script must be able to SET ROLE to that owner.
--
-- Running it again is safe: the function is replaced and the grants are re-applied.
-- sql/uninstall-batch.sql removes it. After installing, reload PostgREST's schema cache
-- (NOTIFY pgrst, 'reload schema').

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?queue_schema} \else \set queue_schema :api_schema \endif
\if :{?queue_table} \else \set queue_table pgqueuer \endif
\if :{?log_table} \else \set log_table pgqueuer_log \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue_batch \endif
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
    id_sequence   text;
    owner_role    text;
    fn            regprocedure;
    body          text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = api_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', api_role
            USING HINT = 'Create the API role first, or name an existing one with -v api_role=<role>.';
    END IF;
    IF queue_rel IS NULL OR log_rel IS NULL THEN
        RAISE EXCEPTION 'PGQueuer tables %.% and %.% not found', queue_schema, queue_table, queue_schema, log_table
            USING HINT = 'Run "pgq install" first, or set queue_schema, queue_table and log_table.';
    END IF;
    id_sequence := pg_get_serial_sequence(queue_rel::text, 'id');
    IF id_sequence IS NULL THEN
        RAISE EXCEPTION 'column id of %.% takes its values from no sequence', queue_schema, queue_table;
    END IF;
    SELECT r.rolname INTO owner_role FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = queue_rel;
    -- pg_has_role is also true for a superuser.
    IF pg_has_role(api_role, owner_role, 'MEMBER') THEN
        RAISE EXCEPTION 'api role "%" can act as %, the owner of the queue tables', api_role, owner_role
            USING DETAIL = 'It could reach the tables directly, whatever this script grants.',
                  HINT = 'Name a role for PostgREST that does not own the tables.';
    END IF;

    -- Placeholders rather than format(), so the body can use format() and % freely.
    body := $body$
DECLARE
    -- The single function's parameter names: the only keys a job object may have.
    _keys constant text[] := ARRAY['entrypoint', 'payload', 'priority', 'execute_after', 'dedupe_key', 'headers'];
    _count         integer;
    _index         bigint;
    _field         text;
    _problem       text[];
    _located       boolean := false;
    _state         text;
    _message       text;
    _detail        text;
    _hint          text;
    _job           jsonb;
    _payload       bytea;
    _priority      integer;
    _execute_after timestamptz;
    _result        jsonb;
BEGIN
    IF jsonb_typeof(jobs) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('jobs must be a JSON array of job objects, got %s', coalesce(jsonb_typeof(jobs), 'null')),
            HINT = 'Send {"jobs": [{"entrypoint": "..."}, ...]}.';
    END IF;
    _count := jsonb_array_length(jobs);
    -- No statement at all, so not even PGQueuer's trigger wakes the workers for nothing.
    IF _count = 0 THEN
        RETURN '[]';
    END IF;

    -- The shape of every element, checked before any value is converted or written. The
    -- text fields must be JSON strings: of any other value jsonb would hand on its own
    -- rendering (1e2 as 100, objects re-spaced), not what was sent. CASE tests in order, so
    -- `-` never sees a scalar.
    SELECT e.ord - 1, e.problem
    INTO _index, _problem
    FROM (
        SELECT a.ord,
               CASE
                   WHEN jsonb_typeof(a.job) <> 'object' THEN
                       ARRAY[NULL, format('expected an object, got %s', jsonb_typeof(a.job))]
                   WHEN a.job - _keys <> '{}' THEN
                       ARRAY[NULL, format('unknown key %s (a job takes %s)',
                                          (SELECT to_jsonb(left(k, 100)) FROM jsonb_object_keys(a.job - _keys) AS k ORDER BY k LIMIT 1),
                                          array_to_string(_keys, ', '))]
                   WHEN NOT a.job ? 'entrypoint' THEN
                       ARRAY['entrypoint', 'missing']
                   WHEN jsonb_typeof(a.job -> 'entrypoint') <> 'string' THEN
                       ARRAY['entrypoint', format('expected a string, got %s', jsonb_typeof(a.job -> 'entrypoint'))]
                   WHEN jsonb_typeof(a.job -> 'payload') NOT IN ('string', 'null') THEN
                       ARRAY['payload', format('expected a string or null, got %s', jsonb_typeof(a.job -> 'payload'))]
                   WHEN jsonb_typeof(a.job -> 'priority') = 'null' THEN
                       ARRAY['priority', 'must not be null (leave it out for the default 0)']
                   WHEN jsonb_typeof(a.job -> 'execute_after') = 'null' THEN
                       ARRAY['execute_after', 'must not be null (leave it out to run at once)']
                   WHEN jsonb_typeof(a.job -> 'dedupe_key') NOT IN ('string', 'null') THEN
                       ARRAY['dedupe_key', format('expected a string or null, got %s', jsonb_typeof(a.job -> 'dedupe_key'))]
                   WHEN jsonb_typeof(a.job -> 'headers') NOT IN ('object', 'null') THEN
                       ARRAY['headers', format('expected an object or null, got %s', jsonb_typeof(a.job -> 'headers'))]
               END AS problem
        FROM jsonb_array_elements(jobs) WITH ORDINALITY AS a(job, ord)
    ) AS e
    WHERE e.problem IS NOT NULL
    ORDER BY e.ord
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'raise_exception',
            MESSAGE = format('jobs[%s]%s: %s', _index, coalesce('.' || _problem[1], ''), _problem[2]),
            DETAIL = format('Element %s of %s (counting from 0) was refused, so no job of this call was enqueued.', _index, _count),
            HINT = 'Correct or leave out that element; the others can be sent again as they are.';
    END IF;

    BEGIN
        WITH job AS (
            SELECT a.ord,
                   a.job ->> 'entrypoint' AS entrypoint,
                   (a.job ->> 'payload')::bytea AS payload,
                   coalesce((a.job ->> 'priority')::integer, 0) AS priority,
                   now() + coalesce((a.job ->> 'execute_after')::interval, '0') AS execute_after,
                   a.job ->> 'dedupe_key' AS dedupe_key,
                   nullif(a.job -> 'headers', 'null') AS headers,
                   -- Within one call the first element with a key is the one that may be
                   -- enqueued; the later ones are its duplicates.
                   a.job ->> 'dedupe_key' IS NOT NULL
                       AND row_number() OVER (PARTITION BY a.job ->> 'dedupe_key' ORDER BY a.ord) > 1 AS repeated
            FROM jsonb_array_elements(jobs) WITH ORDINALITY AS a(job, ord)
        ),
        numbered AS MATERIALIZED (
            -- Ids drawn up front, in input order, are what ties each inserted row back to its
            -- element; nextval is evaluated after the sort, as for any volatile output column.
            SELECT nextval(@id_sequence@::regclass) AS id, j.*
            FROM job AS j
            WHERE NOT j.repeated
            ORDER BY j.ord
        ),
        inserted AS (
            INSERT INTO @queue@
                (id, priority, entrypoint, payload, execute_after, dedupe_key, headers, status)
            SELECT id, priority, entrypoint, payload, execute_after, dedupe_key, headers, 'queued'
            FROM numbered
            -- Inserted in key order, so concurrent calls that share keys wait for each other in
            -- the same order instead of deadlocking.
            ORDER BY dedupe_key
            ON CONFLICT (dedupe_key) WHERE status IN ('queued', 'picked') AND dedupe_key IS NOT NULL
            DO NOTHING
            RETURNING id, entrypoint, priority
        ),
        logged AS (
            INSERT INTO @log@ (job_id, status, entrypoint, priority)
            SELECT id, 'queued', entrypoint, priority FROM inserted
        )
        SELECT jsonb_agg(CASE WHEN i.id IS NULL THEN '{"duplicate": true}'
                              ELSE jsonb_build_object('id', i.id) END
                         ORDER BY j.ord)
        INTO _result
        FROM job AS j
        LEFT JOIN numbered AS n ON n.ord = j.ord
        LEFT JOIN inserted AS i ON i.id = n.id;
    EXCEPTION WHEN data_exception THEN
        -- The statement's error does not say which element it came from. Converting the
        -- elements one at a time, with the same expressions, finds the first bad one.
        BEGIN
            FOR _index, _job IN
                SELECT a.ord - 1, a.job FROM jsonb_array_elements(jobs) WITH ORDINALITY AS a(job, ord)
            LOOP
                _field := 'payload';
                _payload := (_job ->> 'payload')::bytea;
                _field := 'priority';
                _priority := coalesce((_job ->> 'priority')::integer, 0);
                _field := 'execute_after';
                _execute_after := now() + coalesce((_job ->> 'execute_after')::interval, '0');
            END LOOP;
        EXCEPTION WHEN data_exception THEN
            GET STACKED DIAGNOSTICS
                _state = RETURNED_SQLSTATE,
                _message = MESSAGE_TEXT,
                _detail = PG_EXCEPTION_DETAIL,
                _hint = PG_EXCEPTION_HINT;
            _located := true;
        END;
        IF NOT _located THEN
            RAISE;
        END IF;
        -- The element's own SQLSTATE, so a caller sees the code the single function would give.
        RAISE EXCEPTION USING
            ERRCODE = _state,
            MESSAGE = format('jobs[%s].%s: %s', _index, _field, _message),
            DETAIL = concat_ws(' ', nullif(_detail, ''),
                               format('Element %s of %s (counting from 0) was refused, so no job of this call was enqueued.', _index, _count)),
            HINT = concat_ws(' ', nullif(_hint, ''),
                             'Correct or leave out that element; the others can be sent again as they are.');
    END;
    RETURN _result;
END;
$body$;
    -- Qualified whatever this session's search_path, which regclass output is not.
    body := replace(body, '@queue@', format('%I.%I', queue_schema, queue_table));
    body := replace(body, '@log@', format('%I.%I', queue_schema, log_table));
    body := replace(body, '@id_sequence@', quote_literal(id_sequence));

    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION %I.%I(jobs jsonb) RETURNS jsonb
        LANGUAGE plpgsql
        VOLATILE
        SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        AS %L
    $function$, api_schema, function_name, body);

    fn := format('%I.%I(jsonb)', api_schema, function_name)::regprocedure;
    -- Created and restricted in one transaction, so no session ever sees a callable definer
    -- function with PUBLIC's EXECUTE on it.
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', fn, owner_role);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, api_role);
    EXECUTE format('REVOKE ALL ON TABLE %s, %s FROM %I', queue_rel, log_rel, api_role);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', id_sequence, api_role);
    IF has_table_privilege(api_role, queue_rel, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
        OR has_table_privilege(api_role, log_rel, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') THEN
        RAISE WARNING 'api role "%" still has privileges on % or %', api_role, queue_rel, log_rel
            USING DETAIL = 'They come from PUBLIC or from a role it is a member of, not from direct grants.',
                  HINT = 'Revoke them there, so that the api role can only call the function.';
    END IF;
END;
$install$;

COMMIT;
