import type { SourceConfig } from '../config/config.ts';
import { type ExpectedFunction, expectedFunctions } from '../postgrest/probe.ts';
import type { DoctorContext } from './context.ts';

/**
 * Everything a deployment needs, as data: each check has a name, the checks it needs to have
 * passed first, how to run it, and the fix to print when it fails. A check fails with the fix
 * that fits what it found (`fix` is the general advice, used when the finding brings none).
 */

export type CheckResult =
  | { readonly status: 'pass'; readonly detail?: string }
  /** Passed as far as it can be told; the detail says what is left unproven. */
  | { readonly status: 'warn'; readonly detail: string }
  | { readonly status: 'fail'; readonly detail: string; readonly fix?: string };

export interface Check {
  readonly name: string;
  readonly needs: readonly string[];
  readonly run: (ctx: DoctorContext) => Promise<CheckResult>;
  readonly fix: string;
}

const CONFIG = 'config valid';
const TCP = 'broker reachable';
const LOGIN = 'broker login accepted';
const VHOST = 'virtual host open to the user';
const ENDPOINT = 'endpoint reachable';
const TOKEN = 'JWT accepted';

const pass = (detail?: string): CheckResult => ({
  status: 'pass',
  ...(detail === undefined ? {} : { detail }),
});
const fail = (detail: string, fix?: string): CheckResult => ({
  status: 'fail',
  detail,
  ...(fix === undefined ? {} : { fix }),
});

const configCheck: Check = {
  name: CONFIG,
  needs: [],
  fix: 'correct the keys named above (see `pgq-bridge check-config` and the README configuration table)',
  run: async (ctx) => {
    const { problems } = ctx.load();
    return problems === undefined ? pass(ctx.configPath) : fail(problems.join('; '));
  },
};

const brokerChecks: readonly Check[] = [
  {
    name: TCP,
    needs: [CONFIG],
    fix: 'start RabbitMQ, or correct the host and port of amqp.url (PGQ_BRIDGE_AMQP_URL)',
    run: async (ctx) => {
      const problem = await ctx.tcp();
      return problem === undefined ? pass() : fail(problem);
    },
  },
  {
    name: LOGIN,
    needs: [TCP],
    fix: 'correct the user and password in amqp.url (PGQ_BRIDGE_AMQP_URL), or create the user on the broker',
    run: async (ctx) => {
      const { fault } = await ctx.broker();
      if (fault === undefined || fault.kind === 'vhost_refused') return pass();
      return fail(fault.message, fault.kind === 'login_refused' ? undefined : 'check the broker log');
    },
  },
  {
    name: VHOST,
    needs: [LOGIN],
    fix: 'create the virtual host named by the path of amqp.url and grant the user on it (rabbitmqctl add_vhost / set_permissions), or correct the path',
    run: async (ctx) => {
      const { fault } = await ctx.broker();
      return fault === undefined ? pass() : fail(fault.message);
    },
  },
];

function queueChecks(source: SourceConfig, index: number): Check[] {
  const keys = (args: string, queue: string) => ({
    arguments: `sources.${index}.${args}`,
    queue: `sources.${index}.${queue}`,
  });
  return [
    {
      name: `queue ${source.queue}`,
      needs: [VHOST],
      fix: `make sources.${index}.queueArguments match the existing queue, or let the bridge declare it`,
      run: async (ctx) => {
        const state = await ctx.queue(
          source.queue,
          source.declare ? source.queueArguments : undefined,
          keys('queueArguments', 'queue'),
        );
        if ('fault' in state) return fail(state.fault.message);
        if (state.exists)
          return pass(source.declare ? 'exists; the bridge declares it with the same arguments' : 'exists');
        return source.declare
          ? pass('does not exist yet; the bridge declares it at start')
          : fail(`queue ${source.queue} does not exist and sources.${index}.declare is false`);
      },
    },
    {
      name: `dead-letter queue ${source.deadLetterQueue} routable`,
      needs: [VHOST],
      fix: `set sources.${index}.deadLetterQueueArguments to the arguments of the existing queue (e.g. {"x-queue-type": "quorum"}), or delete it`,
      run: async (ctx) => {
        const state = await ctx.queue(
          source.deadLetterQueue,
          source.deadLetterQueueArguments,
          keys('deadLetterQueueArguments', 'deadLetterQueue'),
        );
        if ('fault' in state) return fail(state.fault.message);
        return pass(
          state.exists ? 'exists with the arguments the bridge declares' : 'the bridge declares it at start',
        );
      },
    },
  ];
}

const endpointChecks: readonly Check[] = [
  {
    name: ENDPOINT,
    needs: [CONFIG],
    fix: 'start PostgREST, or correct postgrest.url (PGQ_BRIDGE_POSTGREST_URL)',
    run: async (ctx) => {
      const [fn] = expectedFunctions(ctx.config);
      const { verdict, server } = await ctx.probe(fn as ExpectedFunction);
      return !verdict.ok && verdict.kind === 'unreachable' ? fail(verdict.reason) : pass(server);
    },
  },
  {
    name: TOKEN,
    needs: [ENDPOINT],
    fix: "give a token PostgREST accepts: postgrest.jwt.secret must equal PostgREST's jwt-secret and jwt.role be a role granted to its authenticator (or fix bearerToken / bearerTokenFile)",
    run: async (ctx) => {
      const [fn] = expectedFunctions(ctx.config);
      const { verdict } = await ctx.probe(fn as ExpectedFunction);
      if (!verdict.ok && verdict.kind === 'unauthorized') return fail(verdict.reason);
      const { postgrest } = ctx.config;
      const anonymous =
        postgrest.jwt === undefined &&
        postgrest.bearerToken === undefined &&
        postgrest.bearerTokenFile === undefined;
      return pass(anonymous ? 'no token configured: calls run as the anonymous role' : undefined);
    },
  },
];

function functionCheck(fn: ExpectedFunction): Check {
  return {
    name: `function ${fn.name} callable with the bridge's arguments`,
    needs: [TOKEN],
    fix: `install it (pgq-bridge sql${fn.key === 'batch.function' ? ' --batch' : ''} | psql), grant EXECUTE to the role, reload PostgREST's schema cache (NOTIFY pgrst, 'reload schema'), or correct ${fn.key}`,
    run: async (ctx) => {
      const { verdict } = await ctx.probe(fn);
      if (!verdict.ok) return fail(verdict.reason);
      return verdict.verified ? pass() : { status: 'warn', detail: verdict.reason };
    },
  };
}

const poolCheck: Check = {
  name: 'PostgREST db-pool covers the concurrency',
  needs: [CONFIG],
  fix: "lower the sources' concurrency, or raise PostgREST's db-pool",
  run: async (ctx) => {
    const total = ctx.config.sources.reduce((sum, source) => sum + source.concurrency, 0);
    // PostgREST does not publish db-pool over HTTP; next to it in a pod its env often tells.
    const pool = Number(ctx.env.PGRST_DB_POOL);
    if (!Number.isInteger(pool) || pool <= 0) {
      return {
        status: 'warn',
        detail: `db-pool unknown (set PGRST_DB_POOL to check); keep the total concurrency (${total}) at or below it (PostgREST's default is 10)`,
      };
    }
    return total <= pool
      ? pass(`${total} ≤ ${pool}`)
      : fail(
          `total concurrency ${total} exceeds db-pool ${pool}: calls would queue for a connection (PGRST003)`,
        );
  },
};

/** PostgREST 10 allows no clock skew at all on exp/nbf; v12+ allows 30 s. */
const MAX_SKEW_MS = 5000;

const clockCheck: Check = {
  name: 'clock skew with the endpoint',
  needs: [ENDPOINT],
  fix: 'synchronise the clocks of this host and the PostgREST host (NTP)',
  run: async (ctx) => {
    const [fn] = expectedFunctions(ctx.config);
    const { serverDate, localDate } = await ctx.probe(fn as ExpectedFunction);
    if (serverDate === undefined) return { status: 'warn', detail: 'the endpoint sends no Date header' };
    // The Date header has whole seconds: up to a second of the difference is rounding.
    const skew = serverDate - localDate;
    const seconds = (skew / 1000).toFixed(1);
    if (Math.abs(skew) <= MAX_SKEW_MS + 1000) return pass(`${seconds} s`);
    const effect =
      skew > 0 ? 'tokens look older there and expire early' : 'new tokens look not yet valid there';
    return fail(`the endpoint's clock is ${seconds} s off this host's: ${effect}`);
  },
};

/** The checks for a config (sources and batch mode decide some of them). */
export function checksFor(ctx: DoctorContext): Check[] {
  const { config } = ctx.load();
  if (config === undefined) return [configCheck];
  return [
    configCheck,
    ...brokerChecks,
    ...config.sources.flatMap(queueChecks),
    ...endpointChecks,
    ...expectedFunctions(config).map(functionCheck),
    poolCheck,
    clockCheck,
  ];
}
