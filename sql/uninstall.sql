-- Removes the function that sql/install.sql created.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f sql/uninstall.sql
--
-- Pass the same api_schema and function_name as to the install (defaults: public,
-- fn_pgqueuer_enqueue), e.g. -v api_schema=api -v function_name=enqueue_job.
--
-- The table and sequence grants that install.sql gave the api role are left in place: the
-- role may have held them before, and taking them away could break other users of the
-- queue. Revoke them by hand if nothing else needs them:
--   REVOKE INSERT, SELECT, UPDATE ON pgqueuer, pgqueuer_log FROM pgqapi;
--   REVOKE USAGE, SELECT ON SEQUENCE pgqueuer_id_seq FROM pgqapi;
--
-- Running it when the function is already gone is not an error.

\set ON_ERROR_STOP on

\if :{?api_schema} \else \set api_schema public \endif
\if :{?function_name} \else \set function_name fn_pgqueuer_enqueue \endif

DROP FUNCTION IF EXISTS :"api_schema".:"function_name"(text, bytea, integer, interval, text, jsonb);
