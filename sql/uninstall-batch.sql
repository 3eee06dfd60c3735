-- Removes the bulk function that sql/install-batch.sql created.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/uninstall-batch.sql
--
-- Pass the same api_schema and function_name as to the install (defaults: public,
-- fn_pgqueuer_enqueue_batch), e.g. -v api_schema=api -v function_name=enqueue_jobs.
--
-- install-batch.sql granted the api role EXECUTE on the function and nothing else; dropping
-- the function takes that grant with it.
--
-- Running it when the function is already gone is not an error. Reload PostgREST's schema
-- cache afterwards (NOTIFY pgrst, 'reload schema').

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue_batch \endif

DROP FUNCTION IF EXISTS :"api_schema".:"function_name"(jsonb);
