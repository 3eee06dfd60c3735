-- Removes what sql/install-ledger.sql created: the _once functions, the prepare and prune
-- functions, and the ledger with all its partitions and entries.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/uninstall-ledger.sql
--
-- Pass the same api_schema, queue_schema, function_name, batch_function and ledger_table as to
-- the install (defaults: public, public, fn_pgqueuer_enqueue, fn_pgqueuer_enqueue_batch,
-- pgqueuer_ledger).
--
-- The install granted the api role EXECUTE on the four functions and nothing else (and the
-- bulk function's owner SELECT, INSERT on the ledger when it is not the ledger's owner);
-- dropping the functions and the table takes those grants with them. Without the ledger a
-- redelivered message becomes a second job again. Running it when everything is already gone
-- is not an error. Reload PostgREST's schema cache afterwards (NOTIFY pgrst, 'reload schema').

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?queue_schema} \else \set queue_schema :api_schema \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue \endif
\if :{?batch_function} \else \set batch_function fn_pgqueuer_enqueue_batch \endif
\if :{?ledger_table} \else \set ledger_table pgqueuer_ledger \endif

SELECT :'function_name' || '_once' AS single_once, :'batch_function' || '_once' AS batch_once,
       'fn_' || :'ledger_table' || '_prepare' AS prepare_fn, 'fn_' || :'ledger_table' || '_prune' AS prune_fn
\gset

BEGIN;
DROP FUNCTION IF EXISTS :"api_schema".:"single_once"(text, text, bytea, integer, interval, text, jsonb);
DROP FUNCTION IF EXISTS :"api_schema".:"batch_once"(jsonb);
DROP FUNCTION IF EXISTS :"api_schema".:"prepare_fn"(integer);
DROP FUNCTION IF EXISTS :"api_schema".:"prune_fn"(interval);
DROP TABLE IF EXISTS :"queue_schema".:"ledger_table";
COMMIT;
