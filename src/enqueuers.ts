import type { Config, SourceConfig } from './config/config.ts';
import { onceFunctions } from './config/idempotency.ts';
import type { EnqueueArgs } from './message/args.ts';
import { type TokenSource, withTokenRefresh } from './postgrest/auth.ts';
import { Batcher } from './postgrest/batcher.ts';
import { RpcClient, rpcSocketBudget } from './postgrest/client.ts';
import { type Enqueuer, singleEnqueuer } from './postgrest/enqueuer.ts';

/**
 * Builds the PostgREST side the pipeline calls: the RPC client from the config, and per source
 * the enqueuer in front of it (one call per job, or a batcher of bulk calls in batch mode), each
 * call retried once with a fresh token after a 401.
 */

/** The calls the bridge makes; batch mode needs `postBatch`, without it every call is single. */
export type RpcCalls = {
  enqueue: RpcClient['enqueue'];
  postBatch?: RpcClient['postBatch'];
  close?: () => void;
};

export function createRpcClient(
  config: Config,
  bearerToken: () => string | undefined,
  ca: Buffer | undefined,
): RpcClient {
  return new RpcClient({
    url: config.postgrest.url,
    function: config.postgrest.function,
    schema: config.postgrest.schema,
    timeoutMs: config.postgrest.timeoutMs,
    bearerToken,
    maxSockets: rpcSocketBudget(config),
    ca,
    batchFunction: config.batch.enabled ? config.batch.function : undefined,
    batchTimeoutMs: config.batch.timeoutMs,
    ...onceFunctions(config),
  });
}

/** The enqueuer of each source. */
export function createEnqueuers(
  config: Config,
  rpc: RpcCalls,
  tokens: TokenSource,
): (source: SourceConfig) => Enqueuer {
  const single = singleEnqueuer(
    withTokenRefresh((args: EnqueueArgs) => rpc.enqueue(args), tokens),
    config.postgrest.dedupeConstraint,
  );
  const enqueuers = new Map<string, Enqueuer>(
    config.sources.map((source) => {
      const postBatch = rpc.postBatch;
      if (!config.batch.enabled || postBatch === undefined) return [source.queue, single];
      const once = source.idempotency !== undefined;
      const post = withTokenRefresh((body: Buffer) => postBatch.call(rpc, body, once), tokens);
      const batcher = new Batcher({ postBatch: post }, { ...config.batch, concurrency: source.concurrency });
      return [source.queue, batcher];
    }),
  );
  return (source) => enqueuers.get(source.queue) ?? single;
}
