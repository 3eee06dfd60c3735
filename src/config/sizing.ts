import type { Config } from './config.ts';

/** RPC calls the bridge keeps in flight at most: each source's concurrency, added up. */
export function totalConcurrency(config: Pick<Config, 'sources'>): number {
  return config.sources.reduce((sum, source) => sum + source.concurrency, 0);
}

/**
 * Why a config would queue calls inside PostgREST: every call holds one of its db-pool
 * connections, and calls beyond the pool wait there until they time out as 504 PGRST003.
 */
export function poolWarnings(config: Pick<Config, 'sources' | 'postgrest'>): string[] {
  const pool = config.postgrest.dbPool;
  const total = totalConcurrency(config);
  if (pool === undefined || total <= pool) return [];
  const parts = config.sources.map((s) => `${s.queue}: ${s.concurrency}`).join(', ');
  return [
    `sources: total concurrency ${total} (${parts}) exceeds postgrest.dbPool ${pool}; calls beyond the pool wait inside PostgREST and end in 504 PGRST003 — lower concurrency or raise PostgREST's db-pool`,
  ];
}
