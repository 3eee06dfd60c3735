import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/config.ts';

/** The port the bridge listens on when the config does not say. */
function defaultPort(): number {
  return parseConfig({ amqp: { url: 'amqp://h' }, postgrest: { url: 'http://h' }, sources: [{ queue: 'q' }] })
    .http.port;
}

/** The argument list of a Dockerfile instruction in exec (JSON array) form. */
function execForm(dockerfile: string, pattern: RegExp): string[] {
  const json = dockerfile.match(pattern)?.[1];
  assert.ok(json !== undefined, `${pattern} in the Dockerfile`);
  return JSON.parse(json) as string[];
}

/**
 * No Docker engine runs where the tests run, so check what can be checked: the compose file and
 * the Dockerfile parse, name files that exist, and agree with the bridge's own config.
 */
const root = new URL('../..', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

interface ComposeService {
  readonly image?: string;
  readonly build?: string;
  readonly volumes?: readonly string[];
  readonly environment?: Readonly<Record<string, string>>;
}

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as { services: Readonly<Record<string, ComposeService>> };

  it('brings up RabbitMQ, PostgreSQL, the official PostgREST image and the bridge', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['bridge', 'postgres', 'postgrest', 'rabbitmq']);
    assert.match(compose.services.postgrest?.image ?? '', /^postgrest\/postgrest:v\d+/);
    assert.equal(compose.services.bridge?.build, '.');
  });

  it('mounts only files that exist', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const host = volume.split(':')[0] ?? '';
        assert.ok(existsSync(new URL(host, root)), `${name}: ${host} exists`);
      }
    }
  });

  it('gives the bridge a valid config that points at the compose services', () => {
    const config = parseConfig(JSON.parse(read('deploy/compose/bridge.json')));
    assert.match(config.amqp.url, /@rabbitmq:5672$/);
    assert.equal(config.postgrest.url, 'http://postgrest:3000');
    assert.equal(compose.services.postgrest?.environment?.PGRST_DB_ANON_ROLE, 'pgqapi');
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');

  it('copies only files that exist', () => {
    for (const match of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const source of (match[1] ?? '').split(' ')) assert.ok(existsSync(new URL(source, root)), source);
    }
  });

  it('runs as a non-root user and exposes the default port', () => {
    assert.match(dockerfile, /^USER node$/m);
    assert.match(dockerfile, new RegExp(`^EXPOSE ${defaultPort()}$`, 'm'));
  });

  it('checks health with the bridge itself, reading the config the bridge runs with', () => {
    const healthcheck = execForm(dockerfile, /^HEALTHCHECK .*\\\n\s+CMD (.+)$/m);
    const entrypoint = execForm(dockerfile, /^ENTRYPOINT (.+)$/m);
    const command = execForm(dockerfile, /^CMD (.+)$/m);
    assert.deepEqual(healthcheck.slice(0, 3), [...entrypoint, 'health']);
    assert.deepEqual(healthcheck.slice(3), command.slice(1));
    assert.deepEqual(command.slice(0, 2), ['run', '--config']);
  });
});

describe('the Node.js release', () => {
  const release = read('.nvmrc').trim();
  const major = release.split('.')[0];
  const pkg = JSON.parse(read('package.json')) as {
    engines: { node: string };
    devDependencies: Record<string, string>;
  };

  it('is one exact release in .nvmrc, which the image and CI both run', () => {
    assert.match(release, /^\d+\.\d+\.\d+$/);
    const froms = [...read('Dockerfile').matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    assert.ok(froms.length > 0);
    for (const from of froms) assert.equal(from, `node:${release}-bookworm-slim`);
    const bootstrap = read('.ci/node.sh');
    assert.match(bootstrap, /<\.nvmrc\)/, 'CI takes the release from .nvmrc');
    assert.doesNotMatch(bootstrap, /\b\d+\.\d+\.\d+\b/, 'and names no release of its own');
    const run = read('.ci/run');
    assert.ok(run.indexOf('source .ci/node.sh') < run.indexOf('npm ci'), 'CI installs on that release');
  });

  it('is the floor of engines and the major of the Node type definitions', () => {
    assert.equal(pkg.engines.node, `>=${major}`);
    assert.match(pkg.devDependencies['@types/node'] ?? '', new RegExp(`^\\^${major}\\.`));
  });
});
