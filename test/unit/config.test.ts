import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type Config, parseConfig } from '../../src/config/config.ts';
import { maskSecrets, maskUrlPassword } from '../../src/config/mask.ts';
import { ConfigError } from '../../src/errors.ts';

type Raw = Record<string, unknown>;
type Env = Record<string, string | undefined>;

function minimal(): Raw {
  return {
    amqp: { url: 'amqp://bridge:s3cret@rabbit:5672/vh' },
    postgrest: { url: 'http://postgrest:3000' },
    sources: [{ queue: 'jobs' }],
  };
}

function withSource(source: Raw, extra: Raw = {}): Raw {
  return { ...minimal(), sources: [source], ...extra };
}

/** The problem lines of a config that must be refused. */
function problems(raw: unknown, env: Env = {}): readonly string[] {
  try {
    parseConfig(raw, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.kind, 'config');
    return error.problems;
  }
  assert.fail('expected the config to be refused');
}

function assertProblemAt(lines: readonly string[], location: string): void {
  assert.ok(
    lines.some((line) => line.startsWith(`${location}:`) || line.startsWith(`${location} (from `)),
    `expected a problem at ${location}, got ${JSON.stringify(lines)}`,
  );
}

describe('parseConfig: valid input', () => {
  it('parses config.example.json', () => {
    const raw = JSON.parse(
      readFileSync(new URL('../../config.example.json', import.meta.url), 'utf8'),
    ) as unknown;
    const config = parseConfig(raw);
    assert.equal(config.amqp.url, 'amqp://guest:guest@127.0.0.1:5672');
    assert.equal(config.postgrest.function, 'fn_pgqueuer_enqueue');
    assert.equal(config.sources.length, 2);
    assert.deepEqual(config.sources[0], {
      queue: 'jobs',
      mode: 'envelope',
      declare: true,
      queueArguments: {},
      deadLetterQueueArguments: {},
      dedupeKeyFromMessageId: true,
      concurrency: 5,
      prefetch: 15,
      deadLetterQueue: 'jobs.dead',
    });
    assert.deepEqual(config.sources[1], {
      queue: 'thumbnails',
      mode: 'raw',
      entrypoint: 'make_thumbnail',
      entrypointHeader: 'x-entrypoint',
      deadLetterQueue: 'thumbnails.failed',
      declare: true,
      queueArguments: {},
      deadLetterQueueArguments: {},
      dedupeKeyFromMessageId: false,
      concurrency: 5,
      prefetch: 15,
    });
  });

  it('applies every default', () => {
    const expected: Config = {
      amqp: {
        url: 'amqp://bridge:s3cret@rabbit:5672/vh',
        nodes: ['amqp://bridge:s3cret@rabbit:5672/vh'],
        heartbeatSeconds: 20,
        connectionName: 'pgq-bridge',
        reconnectInitialDelayMs: 500,
        reconnectMaxDelayMs: 30_000,
        connectTimeoutMs: 10_000,
        confirmTimeoutMs: 15_000,
      },
      postgrest: {
        url: 'http://postgrest:3000',
        function: 'fn_pgqueuer_enqueue',
        timeoutMs: 10_000,
        probeIntervalMs: 30_000,
        dedupeConstraint: 'pgqueuer_unique_dedupe_key',
      },
      concurrency: 10,
      sources: [
        {
          queue: 'jobs',
          mode: 'envelope',
          declare: true,
          queueArguments: {},
          deadLetterQueueArguments: {},
          dedupeKeyFromMessageId: false,
          concurrency: 10,
          prefetch: 30,
          deadLetterQueue: 'jobs.dead',
        },
      ],
      retry: {
        initialDelayMs: 200,
        maxDelayMs: 30_000,
        maxHoldMs: 900_000,
        poisonAttempts: 8,
        maxDeliveries: 5,
      },
      batch: {
        enabled: false,
        function: 'fn_pgqueuer_enqueue_batch',
        maxSize: 100,
        lingerMs: 5,
        timeoutMs: 30_000,
        maxBytes: 32 * 1024 * 1024,
      },
      policy: { maxPayloadBytes: 16 * 1024 * 1024, maxHeadersBytes: 64 * 1024 },
      intake: { maxInFlightBytes: 256 * 1024 * 1024 },
      ledger: { table: 'pgqueuer_ledger' },
      shutdown: { graceMs: 20_000 },
      http: { enabled: true, host: '0.0.0.0', port: 9464 },
      log: { level: 'info' },
    };
    assert.deepEqual(parseConfig(minimal()), expected);
  });

  it("gives each source the top-level concurrency and a prefetch of three times the source's concurrency", () => {
    const config = parseConfig({
      ...minimal(),
      concurrency: 4,
      sources: [{ queue: 'a' }, { queue: 'b', concurrency: 2 }, { queue: 'c', concurrency: 3, prefetch: 50 }],
    });
    assert.deepEqual(
      config.sources.map((s) => [s.queue, s.concurrency, s.prefetch, s.deadLetterQueue]),
      [
        ['a', 4, 12, 'a.dead'],
        ['b', 2, 6, 'b.dead'],
        ['c', 3, 50, 'c.dead'],
      ],
    );
  });

  it('accepts a raw source with only an entrypoint header', () => {
    const config = parseConfig(withSource({ queue: 'q', mode: 'raw', entrypointHeader: 'x-ep' }));
    assert.equal(config.sources[0]?.entrypointHeader, 'x-ep');
    assert.equal(config.sources[0]?.entrypoint, undefined);
  });

  it('accepts https and amqps URLs with paths and ports', () => {
    const config = parseConfig({
      ...minimal(),
      amqp: { url: 'amqps://u:p@broker.example:5671/%2F' },
      postgrest: { url: 'https://api.example/rest/v1', schema: 'api' },
    });
    assert.equal(config.amqp.url, 'amqps://u:p@broker.example:5671/%2F');
    assert.equal(config.postgrest.url, 'https://api.example/rest/v1');
    assert.equal(config.postgrest.schema, 'api');
  });

  it('keeps queue arguments', () => {
    const config = parseConfig(
      withSource({ queue: 'q', queueArguments: { 'x-queue-type': 'quorum', 'x-max-length': 5 } }),
    );
    assert.deepEqual(config.sources[0]?.queueArguments, { 'x-queue-type': 'quorum', 'x-max-length': 5 });
  });
});

describe('parseConfig: every problem names its key', () => {
  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ['an array instead of an object', [], '(root)'],
    ['null', null, '(root)'],
    ['a missing amqp section', { postgrest: { url: 'http://h' }, sources: [{ queue: 'q' }] }, 'amqp'],
    ['a missing postgrest section', { amqp: { url: 'amqp://h' }, sources: [{ queue: 'q' }] }, 'postgrest'],
    ['missing sources', { amqp: { url: 'amqp://h' }, postgrest: { url: 'http://h' } }, 'sources'],
    ['no sources', { ...minimal(), sources: [] }, 'sources'],
    ['an unknown top-level key', { ...minimal(), colour: 'blue' }, 'colour'],
    [
      'an unknown key in a section',
      { ...minimal(), amqp: { url: 'amqp://h', heartbeat: 5 } },
      'amqp.heartbeat',
    ],
    ['an unknown key in a source', withSource({ queue: 'q', prefech: 5 }), 'sources.0.prefech'],
    ['a string where a number belongs', { ...minimal(), concurrency: '5' }, 'concurrency'],
    [
      'a fraction where an integer belongs',
      { ...minimal(), amqp: { url: 'amqp://h', heartbeatSeconds: 1.5 } },
      'amqp.heartbeatSeconds',
    ],
    ['a negative duration', { ...minimal(), retry: { initialDelayMs: -1 } }, 'retry.initialDelayMs'],
    ['a string where a boolean belongs', withSource({ queue: 'q', declare: 'yes' }), 'sources.0.declare'],
    ['an unknown mode', withSource({ queue: 'q', mode: 'binary' }), 'sources.0.mode'],
    ['an empty queue name', withSource({ queue: '' }), 'sources.0.queue'],
    ['zero concurrency', { ...minimal(), concurrency: 0 }, 'concurrency'],
    ['a port out of range', { ...minimal(), http: { port: 70_000 } }, 'http.port'],
    ['an unknown log level', { ...minimal(), log: { level: 'verbose' } }, 'log.level'],
    [
      'a function name that is not an identifier',
      { ...minimal(), postgrest: { url: 'http://h', function: 'fn-x' } },
      'postgrest.function',
    ],
    ['a raw source without an entrypoint', withSource({ queue: 'q', mode: 'raw' }), 'sources.0.entrypoint'],
    [
      'an envelope source with an entrypoint',
      withSource({ queue: 'q', entrypoint: 'e' }),
      'sources.0.entrypoint',
    ],
    [
      'an envelope source with an entrypoint header',
      withSource({ queue: 'q', mode: 'envelope', entrypointHeader: 'x-ep' }),
      'sources.0.entrypointHeader',
    ],
    [
      'a queue listed twice',
      { ...minimal(), sources: [{ queue: 'a' }, { queue: 'b' }, { queue: 'a' }] },
      'sources.2.queue',
    ],
    [
      'a prefetch below the default concurrency',
      withSource({ queue: 'q', prefetch: 5 }),
      'sources.0.prefetch',
    ],
    [
      'a prefetch below the source concurrency',
      withSource({ queue: 'q', concurrency: 5, prefetch: 4 }),
      'sources.0.prefetch',
    ],
    [
      'a dead-letter queue that is the source queue',
      withSource({ queue: 'q', deadLetterQueue: 'q' }),
      'sources.0.deadLetterQueue',
    ],
    [
      'retry.maxDelayMs below retry.initialDelayMs',
      { ...minimal(), retry: { initialDelayMs: 500, maxDelayMs: 100 } },
      'retry.maxDelayMs',
    ],
    [
      'amqp.reconnectMaxDelayMs below amqp.reconnectInitialDelayMs',
      { ...minimal(), amqp: { url: 'amqp://h', reconnectInitialDelayMs: 1000, reconnectMaxDelayMs: 10 } },
      'amqp.reconnectMaxDelayMs',
    ],
    ['an http URL for the broker', { ...minimal(), amqp: { url: 'http://rabbit:5672' } }, 'amqp.url'],
    ['a broker URL without a host', { ...minimal(), amqp: { url: 'amqp://' } }, 'amqp.url'],
    ['a broker URL with a space', { ...minimal(), amqp: { url: 'amqp://rab bit' } }, 'amqp.url'],
    ['an ftp URL for PostgREST', { ...minimal(), postgrest: { url: 'ftp://postgrest' } }, 'postgrest.url'],
    [
      'a PostgREST URL without a scheme',
      { ...minimal(), postgrest: { url: 'postgrest:3000' } },
      'postgrest.url',
    ],
    ['a PostgREST URL without a host', { ...minimal(), postgrest: { url: 'http://' } }, 'postgrest.url'],
    ['a PostgREST URL that is not a string', { ...minimal(), postgrest: { url: 3000 } }, 'postgrest.url'],
  ];
  for (const [name, raw, location] of cases) {
    it(`${name} → ${location}`, () => {
      assertProblemAt(problems(raw), location);
    });
  }

  it('names each of several unknown keys in the same object as its own location', () => {
    const lines = problems({ ...minimal(), colour: 'blue', size: 3 });
    assertProblemAt(lines, 'colour');
    assertProblemAt(lines, 'size');
    assert.ok(
      !lines.some((line) => line.startsWith('colour.size')),
      `"colour.size" is not a key: ${JSON.stringify(lines)}`,
    );
  });

  it('reports several problems at once, one line each', () => {
    const lines = problems({ ...minimal(), concurrency: 'x', log: { level: 'loud' }, http: { port: -1 } });
    assert.equal(lines.length, 3, JSON.stringify(lines));
    assertProblemAt(lines, 'concurrency');
    assertProblemAt(lines, 'log.level');
    assertProblemAt(lines, 'http.port');
  });

  it('puts the problem lines in the error message', () => {
    try {
      parseConfig({ ...minimal(), concurrency: 0 });
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /^invalid configuration:\n {2}- concurrency: /);
    }
  });
});

describe('parseConfig: environment overrides', () => {
  it('lets each variable win over the file', () => {
    const config = parseConfig(
      {
        ...minimal(),
        postgrest: { url: 'http://file:3000', bearerToken: 'file-token' },
        http: { port: 1 },
        log: { level: 'warn' },
      },
      {
        PGQ_BRIDGE_AMQP_URL: 'amqps://env:pw@env-rabbit:5671',
        PGQ_BRIDGE_POSTGREST_URL: 'https://env-postgrest/api',
        PGQ_BRIDGE_POSTGREST_TOKEN: 'env-token',
        PGQ_BRIDGE_LOG_LEVEL: 'debug',
        PGQ_BRIDGE_HTTP_PORT: '8080',
      },
    );
    assert.equal(config.amqp.url, 'amqps://env:pw@env-rabbit:5671');
    assert.equal(config.postgrest.url, 'https://env-postgrest/api');
    assert.equal(config.postgrest.bearerToken, 'env-token');
    assert.equal(config.log.level, 'debug');
    assert.equal(config.http.port, 8080);
    // The rest of each section still comes from the file or the defaults.
    assert.equal(config.amqp.heartbeatSeconds, 20);
    assert.equal(config.postgrest.function, 'fn_pgqueuer_enqueue');
    assert.equal(config.http.host, '0.0.0.0');
  });

  it('fills a section the file does not have', () => {
    const raw = minimal();
    delete raw.amqp;
    const config = parseConfig(raw, { PGQ_BRIDGE_AMQP_URL: 'amqp://only-env' });
    assert.equal(config.amqp.url, 'amqp://only-env');
    assert.equal(config.amqp.connectionName, 'pgq-bridge');
  });

  it('ignores unset and empty variables', () => {
    const config = parseConfig(minimal(), {
      PGQ_BRIDGE_AMQP_URL: '',
      PGQ_BRIDGE_HTTP_PORT: undefined,
      OTHER: 'x',
    });
    assert.equal(config.amqp.url, 'amqp://bridge:s3cret@rabbit:5672/vh');
    assert.equal(config.http.port, 9464);
  });

  it('does not change the object it was given', () => {
    const raw = minimal();
    const before = structuredClone(raw);
    parseConfig(raw, { PGQ_BRIDGE_AMQP_URL: 'amqp://env', PGQ_BRIDGE_HTTP_PORT: '1' });
    assert.deepEqual(raw, before);
    assert.equal(Object.isFrozen(raw), false);
  });

  const bad: ReadonlyArray<readonly [string, string, string]> = [
    ['PGQ_BRIDGE_AMQP_URL', 'http://rabbit', 'amqp.url'],
    ['PGQ_BRIDGE_POSTGREST_URL', 'postgrest:3000', 'postgrest.url'],
    ['PGQ_BRIDGE_LOG_LEVEL', 'loud', 'log.level'],
    ['PGQ_BRIDGE_HTTP_PORT', 'abc', 'http.port'],
    ['PGQ_BRIDGE_HTTP_PORT', '70000', 'http.port'],
    ['PGQ_BRIDGE_HTTP_PORT', '80.5', 'http.port'],
    ['PGQ_BRIDGE_HTTP_PORT', '-1', 'http.port'],
  ];
  for (const [name, value, key] of bad) {
    it(`names ${name} when its value ${JSON.stringify(value)} is bad`, () => {
      const lines = problems(minimal(), { [name]: value });
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.ok(lines[0]?.startsWith(`${key} (from ${name}): `), lines[0]);
    });
  }

  it('does not blame a variable for a problem that is in the file', () => {
    const lines = problems({ ...minimal(), http: { port: 'x' } });
    assert.ok(lines[0]?.startsWith('http.port: '), lines[0]);
  });
});

describe('parseConfig: the result is deeply frozen', () => {
  it('freezes every object and array in the result', () => {
    const config = parseConfig(withSource({ queue: 'q', queueArguments: { 'x-queue-type': 'quorum' } }));
    const seen: string[] = [];
    const visit = (value: unknown, path: string): void => {
      if (typeof value !== 'object' || value === null) return;
      assert.ok(Object.isFrozen(value), `${path} is not frozen`);
      seen.push(path);
      for (const [key, child] of Object.entries(value)) visit(child, `${path}.${key}`);
    };
    visit(config, 'config');
    assert.ok(seen.includes('config.sources.0.queueArguments'), JSON.stringify(seen));
  });

  it('refuses writes', () => {
    const config = parseConfig(minimal());
    assert.throws(() => {
      (config as { concurrency: number }).concurrency = 99;
    }, TypeError);
    assert.throws(() => {
      (config.amqp as { url: string }).url = 'amqp://evil';
    }, TypeError);
    assert.throws(() => {
      (config.sources as unknown as unknown[]).push({});
    }, TypeError);
    assert.throws(() => {
      (config.sources[0] as { queue: string }).queue = 'other';
    }, TypeError);
    assert.equal(config.sources[0]?.queue, 'jobs');
  });
});

describe('parseConfig: secrets as HTTP header values', () => {
  it('trims the newline a rendered secret ends with', () => {
    const config = parseConfig(minimal(), { PGQ_BRIDGE_POSTGREST_TOKEN: 'eyJ.payload.sig\n' });
    assert.equal(config.postgrest.bearerToken, 'eyJ.payload.sig');
  });

  it('refuses a token no HTTP header can carry, naming the variable', () => {
    assert.throws(
      () => parseConfig(minimal(), { PGQ_BRIDGE_POSTGREST_TOKEN: 'eyJ.pay\nload.sig' }),
      /postgrest\.bearerToken \(from PGQ_BRIDGE_POSTGREST_TOKEN\): contains characters an HTTP header cannot carry/,
    );
  });
});

describe('parseConfig: delays a loop repeats', () => {
  for (const [section, key] of [
    ['retry', 'initialDelayMs'],
    ['retry', 'maxDelayMs'],
    ['amqp', 'reconnectInitialDelayMs'],
    ['amqp', 'reconnectMaxDelayMs'],
  ] as const) {
    it(`refuses ${section}.${key} = 0 (a hot loop)`, () => {
      const raw = minimal() as Record<string, Record<string, unknown>>;
      raw[section] = { ...raw[section], [key]: 0 };
      assert.throws(() => parseConfig(raw), new RegExp(`${section}\\.${key}: `));
    });
  }
});

describe('maskSecrets', () => {
  it('hides the AMQP password and the bearer token, and nothing else', () => {
    const config = parseConfig(minimal(), { PGQ_BRIDGE_POSTGREST_TOKEN: 'eyJhbGciOi.payload.sig' });
    const masked = maskSecrets(config) as Config;
    assert.equal(masked.amqp.url, 'amqp://bridge:***@rabbit:5672/vh');
    assert.equal(masked.postgrest.bearerToken, '***');
    const text = JSON.stringify(masked);
    assert.ok(!text.includes('s3cret'));
    assert.ok(!text.includes('eyJhbGciOi'));
    assert.deepEqual({ ...masked, amqp: config.amqp, postgrest: config.postgrest }, config);
    assert.equal(masked.postgrest.url, config.postgrest.url);
  });

  it('hides a password in the PostgREST URL too', () => {
    const config = parseConfig({
      ...minimal(),
      postgrest: { url: 'https://api:hunter22@postgrest:3000/v1' },
    });
    const masked = maskSecrets(config) as Config;
    assert.equal(masked.postgrest.url, 'https://api:***@postgrest:3000/v1');
    assert.ok(!JSON.stringify(masked).includes('hunter22'));
  });

  it('adds no token when there is none', () => {
    const masked = maskSecrets(parseConfig(minimal())) as Config;
    assert.equal('bearerToken' in masked.postgrest, false);
  });

  it('leaves the config itself unmasked', () => {
    const config = parseConfig(minimal(), { PGQ_BRIDGE_POSTGREST_TOKEN: 'tok' });
    maskSecrets(config);
    assert.equal(config.amqp.url, 'amqp://bridge:s3cret@rabbit:5672/vh');
    assert.equal(config.postgrest.bearerToken, 'tok');
  });

  const urls: ReadonlyArray<readonly [string, string]> = [
    ['amqp://guest:guest@127.0.0.1:5672', 'amqp://guest:***@127.0.0.1:5672'],
    ['amqps://user:p%40ss%3Aw0rd@broker:5671/vh?heartbeat=5', 'amqps://user:***@broker:5671/vh?heartbeat=5'],
    // Parsed as a URL, so the scheme comes back lower-cased; the point is that the secret is gone.
    ['AMQP://User:Secret@Host', 'amqp://User:***@Host'],
    // An empty password has nothing to hide.
    ['amqp://user:@host', 'amqp://user:@host'],
    ['amqp://user@host', 'amqp://user@host'],
    ['amqp://host:5672', 'amqp://host:5672'],
    // Parsers (amqplib uses WHATWG URL) take the last "@" as the end of the credentials.
    ['amqp://user:p@ss@host:5672/vh', 'amqp://user:***@host:5672/vh'],
  ];
  for (const [url, expected] of urls) {
    it(`masks ${url}`, () => {
      assert.equal(maskUrlPassword(url), expected);
    });
  }
});

describe('parseConfig: TLS settings that would be ignored', () => {
  const base = { postgrest: { url: 'http://p' }, sources: [{ queue: 'q' }] };
  const problems = (raw: Record<string, unknown>): string[] => {
    try {
      parseConfig(raw);
      return [];
    } catch (error) {
      return error instanceof ConfigError ? [...error.problems] : ['not a ConfigError'];
    }
  };

  it('refuses amqp.tls with an amqp:// URL, a certificate without its key, and a CA for plain http', () => {
    assert.deepEqual(problems({ ...base, amqp: { url: 'amqp://h', tls: { caFile: '/ca.pem' } } }), [
      'amqp.tls: only used with amqps:// URLs',
    ]);
    assert.deepEqual(problems({ ...base, amqp: { url: 'amqps://h', tls: { certFile: '/c.pem' } } }), [
      'amqp.tls.certFile: certFile and keyFile go together',
    ]);
    assert.deepEqual(
      problems({ ...base, amqp: { url: 'amqp://h' }, postgrest: { url: 'http://p', caFile: '/ca.pem' } }),
      ['postgrest.caFile: only used with an https:// URL'],
    );
    assert.deepEqual(
      problems({ ...base, amqp: { url: 'amqps://h', tls: { certFile: '/c', keyFile: '/k' } } }),
      [],
    );
  });
});

describe('parseConfig: a RabbitMQ cluster', () => {
  const withAmqp = (amqp: Record<string, unknown>): Record<string, unknown> => ({ ...minimal(), amqp });

  it('lists one node per URL of amqp.urls', () => {
    const config = parseConfig(withAmqp({ urls: ['amqp://u:p@r0:5672', 'amqp://u:p@r1:5672'] }));
    assert.deepEqual(config.amqp.nodes, ['amqp://u:p@r0:5672', 'amqp://u:p@r1:5672']);
  });

  it('lists one node per host of a multi-host amqp.url', () => {
    const config = parseConfig(withAmqp({ url: 'amqp://u:p@r0,r1:5673/vh' }));
    assert.deepEqual(config.amqp.nodes, ['amqp://u:p@r0/vh', 'amqp://u:p@r1:5673/vh']);
  });

  it('refuses both url and urls, and neither', () => {
    assert.throws(
      () => parseConfig(withAmqp({ url: 'amqp://a', urls: ['amqp://b'] })),
      /amqp\.url: choose one of url, urls/,
    );
    assert.throws(() => parseConfig(withAmqp({})), /amqp\.url: url or urls is required/);
    assert.throws(() => parseConfig(withAmqp({ urls: [] })), /amqp\.urls/);
  });

  it('refuses TLS settings when any node URL is plain amqp://', () => {
    assert.throws(
      () => parseConfig(withAmqp({ urls: ['amqps://a', 'amqp://b'], tls: { caFile: '/ca.pem' } })),
      /amqp\.tls: only used with amqps:\/\/ URLs/,
    );
  });

  it('takes PGQ_BRIDGE_AMQP_URLS separated by spaces or commas, multi-host URLs kept whole', () => {
    const config = parseConfig(minimal(), {
      PGQ_BRIDGE_AMQP_URLS: 'amqp://u:p@r0:5672, amqp://u:p@r1,r2/vh amqp://u:p@r3',
    });
    assert.deepEqual(config.amqp.nodes, [
      'amqp://u:p@r0:5672',
      'amqp://u:p@r1/vh',
      'amqp://u:p@r2/vh',
      'amqp://u:p@r3',
    ]);
    assert.equal(config.amqp.url, undefined, 'the variable replaces the file URL');
  });

  it('lets PGQ_BRIDGE_AMQP_URL replace the file amqp.urls', () => {
    const config = parseConfig(withAmqp({ urls: ['amqp://file-a', 'amqp://file-b'] }), {
      PGQ_BRIDGE_AMQP_URL: 'amqp://env',
    });
    assert.deepEqual(config.amqp.nodes, ['amqp://env']);
  });

  it('masks the password of every node URL', () => {
    const masked = maskSecrets(
      parseConfig(withAmqp({ urls: ['amqp://u:s3cret@r0', 'amqp://u:s3cret@r1'] })),
    ) as Config;
    assert.ok(!JSON.stringify(masked).includes('s3cret'));
    assert.deepEqual(masked.amqp.nodes, ['amqp://u:***@r0', 'amqp://u:***@r1']);
  });
});
