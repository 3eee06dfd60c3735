-- Installs the idempotency ledger: "message M became job N", written in the same transaction
-- as the job, so that a message delivered twice (a lost ack, a reconnect, two replicas after a
-- connection loss) becomes one job, whatever has happened to that job since.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/install-ledger.sql
--
-- It needs the single and the bulk enqueue functions (sql/install.sql or
-- sql/install-hardened.sql, and sql/install-batch.sql) and adds, beside them:
--
--   fn_pgqueuer_enqueue_once(message_id text, entrypoint text, payload bytea, priority integer,
--                            execute_after interval, dedupe_key text, headers jsonb) → jsonb
--       {"id": 1041, "replayed": false}   the job was enqueued by this call
--       {"id": 1041, "replayed": true}    message_id was seen before: nothing was enqueued
--       A null message_id enqueues as the plain function does, with no entry (at least once).
--   fn_pgqueuer_enqueue_batch_once(jobs jsonb) → jsonb
--       the bulk function's call, each element with a "message_id" string (or null or none:
--       enqueued without an entry, as above); one result per element in input order:
--       {"id": N}, {"id": N, "replayed": true} (seen before, or an earlier element of the
--       same call had the same message_id) or {"duplicate": true}
--   fn_pgqueuer_ledger_prepare(days_ahead integer DEFAULT 7) → integer
--       creates the daily partitions up to days_ahead days from today (UTC); returns how many
--   fn_pgqueuer_ledger_prune(older_than interval DEFAULT <retention>) → integer
--       drops the daily partitions whose entries are all older than older_than; returns how
--       many. older_than below the installed retention is refused.
--
-- The jobs themselves are inserted by the existing functions, so their checks (the hardened
-- limits and allow-list, the bulk function's errors) apply unchanged; errors keep their
-- SQLSTATE, and a bulk error names the element's index in the caller's array. A dedupe-key
-- conflict of the single function (23505) rolls the whole call back, ledger entry included;
-- a {"duplicate": true} element writes no entry.
--
-- psql variables (defaults in brackets):
--   api_schema      [public]                     schema of the enqueue functions and of these
--   queue_schema    [same as api_schema]         schema of the PGQueuer tables and the ledger
--   function_name   [fn_pgqueuer_enqueue]        the single function; _once is appended
--   batch_function  [fn_pgqueuer_enqueue_batch]  the bulk function; _once is appended
--   ledger_table    [pgqueuer_ledger]            fn_<ledger_table>_prepare/_prune are named after it
--   api_role        [pgqapi]                     gets EXECUTE on the four functions, nothing else
--   retention       [7 days]                     the default and the floor of older_than
--
-- Layout: the ledger is partitioned by UTC day (daily partitions <ledger_table>_YYYYMMDD) and
-- pruned by dropping partitions whole, so pruning neither scans nor leaves dead rows however
-- many entries a day brings. A lookup probes each partition's primary key (message_id, day),
-- one index probe per retained day. The primary key makes concurrent writers of one message_id
-- wait for each other; the second one finds the first one's entry and fails with 40001
-- (serialization_failure), which rolls its job back: PostgREST up to v14 retries the call by
-- itself, later versions answer 500 and the caller retries; either way the retry is answered
-- as a replay. An entry written within an hour of the end of its UTC day is written to the
-- next day's partition as well, so two calls on either side of midnight also meet in one
-- primary key; this holds as long as no enqueue transaction lasts longer than an hour. A
-- default partition catches entries for a day nobody prepared, so a missed prepare never fails
-- an enqueue; prune deletes old rows from it, and prepare leaves a day that already has rows
-- there in it.
--
-- Schedule prepare and prune, e.g. with pg_cron (as a role that may execute them):
--   SELECT cron.schedule('pgqueuer-ledger', '17 * * * *',
--          $$SELECT fn_pgqueuer_ledger_prepare(); SELECT fn_pgqueuer_ledger_prune()$$);
-- or let the bridge call them through PostgREST (see docs/ledger.md). Both are cheap when
-- there is nothing to do. A drop needs a brief exclusive lock on the ledger: prune waits at
-- most 2 s for it (lock_timeout) and fails with 55P03 rather than hold up enqueues behind it;
-- the next run drops what is left.
--
-- Privileges: the four functions are SECURITY DEFINER with search_path = pg_catalog, pg_temp.
-- The single and bulk _once functions are owned by the owner of the function they call (so
-- a hardened function's owner role works); the ledger and the maintenance functions belong to
-- the single function's owner, which needs CREATE on queue_schema for the partitions. The api
-- role gets EXECUTE on the four functions and no privilege on the ledger. Whoever runs the
-- script must be able to SET ROLE to those owners (a superuser can).
--
-- Running it again is safe: the functions are replaced, the ledger and its entries are kept,
-- and a changed retention takes effect. sql/uninstall-ledger.sql removes it all, entries too.
-- After installing, reload PostgREST's schema cache (NOTIFY pgrst, 'reload schema').

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?queue_schema} \else \set queue_schema :api_schema \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue \endif
\if :{?batch_function} \else \set batch_function fn_pgqueuer_enqueue_batch \endif
\if :{?ledger_table} \else \set ledger_table pgqueuer_ledger \endif
\if :{?api_role} \else \set api_role pgqapi \endif
\if :{?retention} \else \set retention '7 days' \endif

BEGIN;

-- psql does not interpolate inside dollar quotes, so the values reach the DO block as
-- transaction-local settings.
SET LOCAL pgq_install.api_schema = :'api_schema';
SET LOCAL pgq_install.queue_schema = :'queue_schema';
SET LOCAL pgq_install.function_name = :'function_name';
SET LOCAL pgq_install.batch_function = :'batch_function';
SET LOCAL pgq_install.ledger_table = :'ledger_table';
SET LOCAL pgq_install.api_role = :'api_role';
SET LOCAL pgq_install.retention = :'retention';

DO $install$
DECLARE
    api_schema     text := current_setting('pgq_install.api_schema');
    queue_schema   text := current_setting('pgq_install.queue_schema');
    ledger_table   text := current_setting('pgq_install.ledger_table');
    api_role       text := current_setting('pgq_install.api_role');
    retention      interval;
    single_fn      regprocedure := to_regprocedure(format('%I.%I(text, bytea, integer, interval, text, jsonb)',
                                                          api_schema, current_setting('pgq_install.function_name')));
    batch_fn       regprocedure := to_regprocedure(format('%I.%I(jsonb)', api_schema, current_setting('pgq_install.batch_function')));
    ledger         text := format('%I.%I', queue_schema, ledger_table);
    ledger_owner   text;
    batch_owner    text;
    fn             regprocedure;
    owner_of       text;
    body           text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = api_role) THEN
        RAISE EXCEPTION 'role "%" does not exist', api_role
            USING HINT = 'Create the API role first, or name an existing one with -v api_role=<role>.';
    END IF;
    IF single_fn IS NULL OR batch_fn IS NULL THEN
        RAISE EXCEPTION 'enqueue functions %.% and %.% not found', api_schema, current_setting('pgq_install.function_name'),
                        api_schema, current_setting('pgq_install.batch_function')
            USING HINT = 'Run sql/install.sql (or sql/install-hardened.sql) and sql/install-batch.sql first, or set function_name and batch_function.';
    END IF;
    BEGIN
        retention := current_setting('pgq_install.retention')::interval;
    EXCEPTION WHEN data_exception THEN
        retention := NULL;
    END;
    IF retention IS NULL OR retention < interval '1 day' THEN
        RAISE EXCEPTION 'retention must be an interval of at least 1 day, not "%"', current_setting('pgq_install.retention')
            USING HINT = 'Keep entries at least as long as a message can be redelivered: the longest broker outage, queue backlog or consumer_timeout you plan for.';
    END IF;
    SELECT r.rolname INTO ledger_owner FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE p.oid = single_fn;
    SELECT r.rolname INTO batch_owner FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE p.oid = batch_fn;
    IF NOT has_schema_privilege(ledger_owner, queue_schema, 'CREATE') THEN
        RAISE EXCEPTION 'role "%" (owner of %) has no CREATE on schema %', ledger_owner, single_fn, queue_schema
            USING HINT = format('The ledger''s daily partitions are created as that role: GRANT CREATE ON SCHEMA %I TO %I.', queue_schema, ledger_owner);
    END IF;
    IF pg_has_role(api_role, ledger_owner, 'MEMBER') OR pg_has_role(api_role, batch_owner, 'MEMBER') THEN
        RAISE EXCEPTION 'api role "%" can act as the owner of the enqueue functions', api_role
            USING HINT = 'Install the enqueue functions as a role the api role is not a member of.';
    END IF;

    -- The parent, its default partition and today's partition; prepare adds the days ahead.
    IF to_regclass(ledger) IS NULL THEN
        EXECUTE format($ddl$
            CREATE TABLE %1$s (
                -- Compared byte for byte (equality is all a lookup needs), which is much
                -- cheaper in the primary key than the database's collation.
                message_id text        COLLATE "C" NOT NULL,
                day        date        NOT NULL,
                job_id     bigint      NOT NULL,
                created    timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (message_id, day)
            ) PARTITION BY RANGE (day);
            CREATE TABLE %2$s PARTITION OF %1$s DEFAULT;
            ALTER TABLE %1$s OWNER TO %3$I;
            ALTER TABLE %2$s OWNER TO %3$I;
        $ddl$, ledger, format('%I.%I', queue_schema, ledger_table || '_default'), ledger_owner);
    END IF;
    EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, %I', ledger, api_role);
    IF batch_owner <> ledger_owner THEN
        EXECUTE format('GRANT SELECT, INSERT ON TABLE %s TO %I', ledger, batch_owner);
    END IF;

    -- Placeholders rather than format(), so the bodies can use format() and % freely.
    body := $body$
#variable_conflict use_variable
DECLARE
    _day    date := (now() AT TIME ZONE 'UTC')::date;
    _next   date := ((now() + interval '1 hour') AT TIME ZONE 'UTC')::date;
    _job_id bigint;
    _rows   integer;
BEGIN
    IF message_id = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'message_id must not be empty',
            HINT = 'Send the message''s identity, or null for a message that has none.';
    END IF;
    -- A message without an identity is enqueued as by the plain function: at least once.
    IF message_id IS NULL THEN
        RETURN jsonb_build_object('id', @single@(entrypoint, payload, priority, execute_after, dedupe_key, headers),
                                  'replayed', false);
    END IF;
    SELECT l.job_id INTO _job_id FROM @ledger@ AS l WHERE l.message_id = message_id AND l.day <= _next LIMIT 1;
    IF FOUND THEN
        RETURN jsonb_build_object('id', _job_id, 'replayed', true);
    END IF;
    _job_id := @single@(entrypoint, payload, priority, execute_after, dedupe_key, headers);
    INSERT INTO @ledger@ (message_id, day, job_id)
    SELECT DISTINCT message_id, d.day, _job_id FROM (VALUES (_day), (_next)) AS d(day)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS _rows = ROW_COUNT;
    -- One row, or two near the end of the day.
    IF _rows < 1 + (_next > _day)::integer THEN
        RAISE EXCEPTION USING
            ERRCODE = 'serialization_failure',
            MESSAGE = format('message_id %s was enqueued by a concurrent call', left(quote_literal(message_id), 200)),
            HINT = 'Call again: the answer is the other call''s job id, as a replay.';
    END IF;
    RETURN jsonb_build_object('id', _job_id, 'replayed', false);
END;
$body$;
    body := replace(body, '@ledger@', ledger);
    body := replace(body, '@single@', format('%I.%I', api_schema, current_setting('pgq_install.function_name')));
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION %I.%I(
            message_id    text,
            entrypoint    text,
            payload       bytea    DEFAULT NULL,
            priority      integer  DEFAULT 0,
            execute_after interval DEFAULT '0'::interval,
            dedupe_key    text     DEFAULT NULL,
            headers       jsonb    DEFAULT NULL
        ) RETURNS jsonb
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS %L
    $function$, api_schema, current_setting('pgq_install.function_name') || '_once', body);

    body := $body$
DECLARE
    _day     date := (now() AT TIME ZONE 'UTC')::date;
    _next    date := ((now() + interval '1 hour') AT TIME ZONE 'UTC')::date;
    _count   integer;
    _index   bigint;
    _problem text;
    _plan    jsonb;
    _fresh   jsonb;
    _results jsonb;
    _ords    bigint[];
    _expected integer;
    _rows    integer;
    _state   text;
    _message text;
    _detail  text;
    _hint    text;
    _result  jsonb;
BEGIN
    IF jsonb_typeof(jobs) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('jobs must be a JSON array of job objects, got %s', coalesce(jsonb_typeof(jobs), 'null')),
            HINT = 'Send {"jobs": [{"message_id": "...", "entrypoint": "..."}, ...]}.';
    END IF;
    _count := jsonb_array_length(jobs);
    IF _count = 0 THEN
        RETURN '[]';
    END IF;

    SELECT a.ord - 1,
           CASE
               WHEN jsonb_typeof(a.job) <> 'object' THEN format(': expected an object, got %s', jsonb_typeof(a.job))
               WHEN jsonb_typeof(a.job -> 'message_id') NOT IN ('string', 'null') THEN
                   format('.message_id: expected a string or null, got %s', jsonb_typeof(a.job -> 'message_id'))
               ELSE '.message_id: must not be empty'
           END
    INTO _index, _problem
    FROM jsonb_array_elements(jobs) WITH ORDINALITY AS a(job, ord)
    WHERE jsonb_typeof(a.job) <> 'object' OR jsonb_typeof(a.job -> 'message_id') NOT IN ('string', 'null')
       OR a.job ->> 'message_id' = ''
    ORDER BY a.ord
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'raise_exception',
            MESSAGE = format('jobs[%s]%s', _index, _problem),
            DETAIL = format('Element %s of %s (counting from 0) was refused, so no job of this call was enqueued.', _index, _count),
            HINT = 'Correct or leave out that element; the others can be sent again as they are.';
    END IF;

    -- Each element is new (the first of its message_id in this call, with no entry yet) or a
    -- replay of an entry or of that first element. Only new ones go to the bulk function, in
    -- input order; _ords maps their positions there back to the caller's indexes.
    SELECT jsonb_agg(jsonb_build_object('ord', p.ord, 'message_id', p.message_id, 'entry', p.entry,
                                        'pos', p.pos, 'first_pos', p.first_pos)
                     ORDER BY p.ord),
           jsonb_agg(p.job ORDER BY p.ord) FILTER (WHERE p.fresh),
           coalesce(array_agg(p.ord - 1 ORDER BY p.ord) FILTER (WHERE p.fresh), '{}')
    INTO _plan, _fresh, _ords
    FROM (
        -- first_pos: where the first element of this message_id went, for its repeats.
        SELECT r.*, CASE WHEN r.message_id IS NULL THEN r.pos
                         ELSE max(r.pos) OVER (PARTITION BY r.message_id) END AS first_pos
        FROM (
        SELECT q.*, CASE WHEN q.fresh THEN sum(q.fresh::int) OVER (ORDER BY q.ord) END AS pos
        FROM (
            SELECT a.ord, a.message_id, a.job, e.job_id AS entry,
                   a.message_id IS NULL
                       OR (a.ord = min(a.ord) OVER (PARTITION BY a.message_id) AND e.job_id IS NULL) AS fresh
            FROM (SELECT i.ord, i.job ->> 'message_id' AS message_id, i.job - 'message_id' AS job
                  FROM jsonb_array_elements(jobs) WITH ORDINALITY AS i(job, ord)) AS a
            -- One index scan per partition for all ids of the call; days ahead are pruned.
            LEFT JOIN (
                SELECT DISTINCT ON (l.message_id) l.message_id, l.job_id
                FROM @ledger@ AS l
                WHERE l.message_id = ANY (ARRAY(SELECT j ->> 'message_id' FROM jsonb_array_elements(jobs) AS j))
                  AND l.day <= _next
            ) AS e ON e.message_id = a.message_id
        ) AS q
        ) AS r
    ) AS p;

    IF _fresh IS NOT NULL THEN
        BEGIN
            _results := @batch@(_fresh);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS
                _state = RETURNED_SQLSTATE, _message = MESSAGE_TEXT, _detail = PG_EXCEPTION_DETAIL, _hint = PG_EXCEPTION_HINT;
            -- The bulk function names an element of the array it was given; the caller sent
            -- another one.
            _index := substring(_message FROM '^jobs\[(\d+)\]')::bigint;
            IF _index IS NULL THEN
                RAISE;
            END IF;
            _index := _ords[_index + 1];
            RAISE EXCEPTION USING
                ERRCODE = _state,
                MESSAGE = regexp_replace(_message, '^jobs\[\d+\]', format('jobs[%s]', _index)),
                DETAIL = regexp_replace(coalesce(_detail, ''), 'Element \d+ of \d+', format('Element %s of %s', _index, _count)),
                HINT = coalesce(_hint, '');
        END;

        -- Entries in message_id order, so concurrent calls that share ids wait for each other
        -- in one order instead of deadlocking.
        WITH written AS (
            SELECT e.message_id, (_results -> (e.pos - 1) ->> 'id')::bigint AS job_id
            FROM jsonb_to_recordset(_plan) AS e(message_id text, pos integer)
            WHERE e.pos IS NOT NULL AND e.message_id IS NOT NULL AND _results -> (e.pos - 1) ? 'id'
        ),
        inserted AS (
            INSERT INTO @ledger@ (message_id, day, job_id)
            SELECT w.message_id, d.day, w.job_id
            FROM written AS w CROSS JOIN (SELECT DISTINCT v.day FROM (VALUES (_day), (_next)) AS v(day)) AS d
            ORDER BY w.message_id, d.day
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM inserted),
               (SELECT count(*) FROM written) * CASE WHEN _next > _day THEN 2 ELSE 1 END
        INTO _rows, _expected;
        IF _rows < _expected THEN
            RAISE EXCEPTION USING
                ERRCODE = 'serialization_failure',
                MESSAGE = 'a message_id of this call was enqueued by a concurrent call',
                HINT = 'Call again: those elements are answered with the other call''s job ids, as replays.';
        END IF;
    END IF;

    SELECT jsonb_agg(
               CASE
                   WHEN e.entry IS NOT NULL THEN jsonb_build_object('id', e.entry, 'replayed', true)
                   WHEN e.pos IS NOT NULL THEN _results -> (e.pos - 1)
                   WHEN _results -> (e.first_pos - 1) ? 'id' THEN
                       jsonb_build_object('id', (_results -> (e.first_pos - 1) ->> 'id')::bigint, 'replayed', true)
                   ELSE _results -> (e.first_pos - 1)
               END
               ORDER BY e.ord)
    INTO _result
    FROM jsonb_to_recordset(_plan) AS e(ord bigint, entry bigint, pos integer, first_pos integer);
    RETURN _result;
END;
$body$;
    body := replace(body, '@ledger@', ledger);
    body := replace(body, '@batch@', format('%I.%I', api_schema, current_setting('pgq_install.batch_function')));
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION %I.%I(jobs jsonb) RETURNS jsonb
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS %L
    $function$, api_schema, current_setting('pgq_install.batch_function') || '_once', body);

    body := $body$
DECLARE
    _day     date;
    _name    text;
    _created integer := 0;
BEGIN
    IF days_ahead IS NULL OR days_ahead < 0 OR days_ahead > 366 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = format('days_ahead must be from 0 to 366, not %s', days_ahead);
    END IF;
    FOR _day IN SELECT generate_series(0, days_ahead) + (now() AT TIME ZONE 'UTC')::date LOOP
        _name := @table@ || '_' || to_char(_day, 'YYYYMMDD');
        -- A day with entries in the default partition stays there: a partition for it could
        -- not be attached, and prune removes them from there in time.
        CONTINUE WHEN to_regclass(format('%I.%I', @schema@, _name)) IS NOT NULL
            OR EXISTS (SELECT FROM @default@ WHERE day = _day);
        -- IF NOT EXISTS: several replicas may prepare at the same time.
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF @ledger@ FOR VALUES FROM (%L) TO (%L)',
                       @schema@, _name, _day, _day + 1);
        _created := _created + 1;
    END LOOP;
    RETURN _created;
END;
$body$;
    body := replace(body, '@ledger@', ledger);
    body := replace(body, '@default@', format('%I.%I', queue_schema, ledger_table || '_default'));
    body := replace(body, '@schema@', quote_literal(queue_schema));
    body := replace(body, '@table@', quote_literal(ledger_table));
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION %I.%I(days_ahead integer DEFAULT 7) RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS %L
    $function$, api_schema, 'fn_' || ledger_table || '_prepare', body);

    body := $body$
DECLARE
    _retention constant interval := @retention@;
    _cutoff    date;
    _part      regclass;
    _dropped   integer := 0;
BEGIN
    IF older_than IS NULL OR older_than < _retention THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('older_than must be at least the installed retention %s, not %s', _retention, coalesce(older_than::text, 'null')),
            HINT = 'Install sql/install-ledger.sql again with -v retention=<interval> to keep entries for less time.';
    END IF;
    -- A partition is dropped when its last day ends before now() - older_than, so every entry
    -- in it is older than that.
    _cutoff := ((now() - older_than) AT TIME ZONE 'UTC')::date;
    FOR _part IN
        SELECT i.inhrelid::regclass
        FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = @ledger@::regclass
          AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([0-9-]+)''\)')::date <= _cutoff
        ORDER BY 1
    LOOP
        -- IF EXISTS: another replica's prune may have dropped it meanwhile.
        EXECUTE format('DROP TABLE IF EXISTS %s', _part);
        _dropped := _dropped + 1;
    END LOOP;
    DELETE FROM @default@ WHERE day < _cutoff;
    RETURN _dropped;
END;
$body$;
    body := replace(body, '@ledger@', quote_literal(ledger));
    body := replace(body, '@default@', format('%I.%I', queue_schema, ledger_table || '_default'));
    body := replace(body, '@retention@', quote_literal(retention::text) || '::interval');
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION %I.%I(older_than interval DEFAULT %L) RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s'
        AS %L
    $function$, api_schema, 'fn_' || ledger_table || '_prune', retention, body);

    -- Created and restricted in one transaction, so no session ever sees a callable definer
    -- function with PUBLIC's EXECUTE on it.
    FOR fn, owner_of IN
        SELECT to_regprocedure(format('%I.%I%s', api_schema, f.name, f.args)), f.owner
        FROM (VALUES (current_setting('pgq_install.function_name') || '_once', '(text, text, bytea, integer, interval, text, jsonb)', ledger_owner),
                     (current_setting('pgq_install.batch_function') || '_once', '(jsonb)', batch_owner),
                     ('fn_' || ledger_table || '_prepare', '(integer)', ledger_owner),
                     ('fn_' || ledger_table || '_prune', '(interval)', ledger_owner)) AS f(name, args, owner)
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', fn, owner_of);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, api_role);
    END LOOP;
END;
$install$;

COMMIT;

-- Today and the days ahead exist from the start, whatever the schedule does later.
SELECT format('%I.%I', :'api_schema', 'fn_' || :'ledger_table' || '_prepare') AS prepare_fn
\gset
SELECT :prepare_fn() AS ledger_partitions_created \gset
