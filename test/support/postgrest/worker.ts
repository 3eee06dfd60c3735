// PostgREST's connection worker and schema-cache listener.
//
// The worker runs at start-up and whenever a request ended in a 503 or the LISTEN
// connection was lost. Each attempt flushes the pool, loads the schema cache and (re)starts
// the listener; a failed attempt is retried after 1, 2, 4 ... 32 s. As in 10.1.2, the
// Retry-After of 503 answers is the delay before the attempt that just failed (0 for the
// first), so it reads 0, 1, 2, 4 ... while the database stays away; it is 0 again once an
// attempt succeeded (10.1.2 keeps the last value, which no recording shows). The listener
// reloads the cache on `NOTIFY pgrst` with an empty payload or 'reload schema'.

import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { quoteIdent } from './call.ts';
import type { Database } from './db.ts';
import type { Flavor } from './errors.ts';
import { loadSchemaCache, type SchemaCache } from './schema-cache.ts';

export interface WorkerOptions {
  readonly db: Database;
  readonly schemas: readonly string[];
  readonly connectionString: string;
  readonly applicationName: string;
  /** Channel for reload notifications; undefined = no listener (db-channel-enabled = false). */
  readonly channel: string | undefined;
  readonly flavor: Flavor;
}

const MAX_RETRY_DELAY_S = 32;

export class ConnectionWorker {
  readonly #options: WorkerOptions;
  readonly #closing = new AbortController();
  #cache: SchemaCache | undefined;
  #retryAfterSeconds = 0;
  #running: Promise<void> | undefined;
  #listener: pg.Client | undefined;
  #lastReload: Promise<void> = Promise.resolve();
  #queuedReload: Promise<void> | undefined;
  #attempts = 0;
  #failedAttempts = 0;
  #cacheLoads = 0;

  constructor(options: WorkerOptions) {
    this.#options = options;
  }

  get cache(): SchemaCache | undefined {
    return this.#cache;
  }

  get retryAfterSeconds(): number {
    return this.#options.flavor === 'v14' ? 0 : this.#retryAfterSeconds;
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  get counters(): { attempts: number; failedAttempts: number; cacheLoads: number } {
    return { attempts: this.#attempts, failedAttempts: this.#failedAttempts, cacheLoads: this.#cacheLoads };
  }

  /** Starts the worker unless it is running; settles when an attempt succeeded (or on close). */
  run(): Promise<void> {
    this.#running ??= this.#work().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #work(): Promise<void> {
    const { signal } = this.#closing;
    let delaySeconds = 0;
    for (;;) {
      signal.throwIfAborted();
      this.#options.db.flush();
      this.#attempts++;
      try {
        await this.#loadCache();
        await this.#listen();
        this.#retryAfterSeconds = 0;
        return;
      } catch {
        this.#failedAttempts++;
        // v14 drops the cache when it cannot reload it (requests then get PGRST002).
        if (this.#options.flavor === 'v14') this.#cache = undefined;
        this.#retryAfterSeconds = delaySeconds;
        delaySeconds = delaySeconds === 0 ? 1 : Math.min(delaySeconds * 2, MAX_RETRY_DELAY_S);
        await sleep(delaySeconds * 1000, undefined, { signal });
      }
    }
  }

  /** Reloads the schema cache; calls made while one reload waits share it. */
  reloadSchemaCache(): Promise<void> {
    if (this.#queuedReload !== undefined) return this.#queuedReload;
    const reload = this.#lastReload
      .catch(() => {})
      .then(() => {
        this.#queuedReload = undefined;
        return this.#loadCache();
      });
    this.#queuedReload = reload;
    this.#lastReload = reload;
    return reload;
  }

  async #loadCache(): Promise<void> {
    this.#cache = await this.#options.db.withClient((client) =>
      loadSchemaCache(client, this.#options.schemas),
    );
    this.#cacheLoads++;
  }

  async #listen(): Promise<void> {
    const { channel } = this.#options;
    if (channel === undefined || this.#listener !== undefined) return;
    const client = new pg.Client({
      connectionString: this.#options.connectionString,
      application_name: `${this.#options.applicationName} listener`,
    });
    // Errors are followed by 'end', where the loss is handled; this only keeps them from crashing.
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(channel)}`);
      this.#closing.signal.throwIfAborted();
    } catch (error: unknown) {
      await client.end().catch(() => {});
      throw error;
    }
    client.on('notification', ({ channel: from, payload }) => {
      if (from === channel && (payload === undefined || payload === '' || payload === 'reload schema')) {
        this.reloadSchemaCache().catch(() => this.#recover());
      }
    });
    client.once('end', () => {
      if (this.#listener !== client) return;
      this.#listener = undefined;
      this.#recover();
    });
    this.#listener = client;
  }

  #recover(): void {
    if (!this.#closing.signal.aborted) this.run().catch(() => {});
  }

  async close(): Promise<void> {
    this.#closing.abort();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    await this.#running?.catch(() => {});
  }
}
