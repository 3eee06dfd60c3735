// The test schema (test/support/pgqueuer-schema.sql) stands in for what PGQueuer's `pgq install`
// creates, so it must leave the same indexes: names and definitions as PostgreSQL prints them
// for PGQueuer's own install.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createScratchDatabase, type ScratchDatabase } from '../support/pg.ts';

const PGQUEUER_INDEXES = [
  'CREATE INDEX pgqueuer_ep_ea_idx ON pgqueuer USING btree (entrypoint, execute_after) ' +
    "WHERE (status = 'queued'::pgqueuer_status)",
  'CREATE INDEX pgqueuer_ep_prio_id_idx ON pgqueuer USING btree (entrypoint, priority DESC, id) ' +
    "WHERE (status = 'queued'::pgqueuer_status)",
  'CREATE INDEX pgqueuer_log_created ON pgqueuer_log USING btree (created)',
  'CREATE INDEX pgqueuer_log_job_id_status ON pgqueuer_log USING btree (job_id, created DESC)',
  'CREATE INDEX pgqueuer_log_not_aggregated ON pgqueuer_log USING btree ((1)) WHERE (NOT aggregated)',
  'CREATE UNIQUE INDEX pgqueuer_log_pkey ON pgqueuer_log USING btree (id)',
  'CREATE INDEX pgqueuer_log_status ON pgqueuer_log USING btree (status)',
  'CREATE UNIQUE INDEX pgqueuer_pkey ON pgqueuer USING btree (id)',
  'CREATE INDEX pgqueuer_priority_id_id1_idx ON pgqueuer USING btree (priority, id DESC) INCLUDE (id) ' +
    "WHERE (status = 'queued'::pgqueuer_status)",
  'CREATE INDEX pgqueuer_queue_manager_id_idx ON pgqueuer USING btree (queue_manager_id) ' +
    'WHERE (queue_manager_id IS NOT NULL)',
  'CREATE UNIQUE INDEX pgqueuer_schedules_expression_entrypoint_key ON pgqueuer_schedules ' +
    'USING btree (expression, entrypoint)',
  'CREATE UNIQUE INDEX pgqueuer_schedules_pkey ON pgqueuer_schedules USING btree (id)',
  'CREATE UNIQUE INDEX pgqueuer_statistics_pkey ON pgqueuer_statistics USING btree (id)',
  'CREATE UNIQUE INDEX pgqueuer_statistics_unique_count ON pgqueuer_statistics USING btree ' +
    "(priority, date_trunc('sec'::text, (created AT TIME ZONE 'UTC'::text)), status, entrypoint)",
  'CREATE UNIQUE INDEX pgqueuer_unique_dedupe_key ON pgqueuer USING btree (dedupe_key) ' +
    "WHERE ((status = ANY (ARRAY['queued'::pgqueuer_status, 'picked'::pgqueuer_status])) " +
    'AND (dedupe_key IS NOT NULL))',
  'CREATE INDEX pgqueuer_updated_id_id1_idx ON pgqueuer USING btree (updated, id DESC) INCLUDE (id) ' +
    "WHERE (status = 'picked'::pgqueuer_status)",
];

describe('the test schema', () => {
  let db: ScratchDatabase;
  before(async () => {
    db = await createScratchDatabase('pgqb_schema', { install: false });
  });
  after(() => db.drop());

  test("has PGQueuer's indexes, by name and definition", async () => {
    const { rows } = await db.pool.query<{ definition: string }>(
      `SELECT replace(indexdef, ' ON ' || quote_ident(schemaname) || '.', ' ON ') AS definition
         FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname`,
    );
    assert.deepEqual(
      rows.map((r) => r.definition),
      PGQUEUER_INDEXES,
    );
  });

  test("has PGQueuer's statement-level notify trigger on the queue table", async () => {
    const { rows } = await db.pool.query<{ definition: string }>(
      `SELECT pg_get_triggerdef(oid) AS definition FROM pg_trigger
        WHERE tgrelid = 'pgqueuer'::regclass AND NOT tgisinternal`,
    );
    assert.deepEqual(
      rows.map((r) => r.definition.replace(/ ON \w+\./, ' ON ')),
      [
        'CREATE TRIGGER tg_pgqueuer_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON pgqueuer ' +
          'FOR EACH STATEMENT EXECUTE FUNCTION fn_pgqueuer_changed()',
      ],
    );
  });
});
