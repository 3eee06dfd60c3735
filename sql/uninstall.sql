-- Removes the function that sql/install.sql created.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/uninstall.sql
--
-- Pass the same api_schema and function_name as to the install (defaults: public,
-- fn_pgqueuer_enqueue), e.g. -v api_schema=api -v function_name=enqueue_job.
--
-- install.sql granted the api role EXECUTE on the function and nothing else; dropping the
-- function takes that grant with it, so the role is left holding nothing this script gave.
--
-- Running it when the function is already gone is not an error.

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue \endif

DROP FUNCTION IF EXISTS :"api_schema".:"function_name"(text, bytea, integer, interval, text, jsonb);
