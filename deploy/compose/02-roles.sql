-- Roles for PostgREST in the compose demo: it logs in as `authenticator` and switches to the
-- anonymous role `pgqapi` per request (the role sql/install.sql grants).
CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'authenticator';
CREATE ROLE pgqapi NOLOGIN;
GRANT pgqapi TO authenticator;
