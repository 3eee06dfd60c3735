import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/config.ts';

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
    assert.deepEqual(config.amqp.nodes, ['amqp://bridge:bridge@rabbitmq:5672']);
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

  it('runs as a non-root user, on the Node major the project targets, with a health check on /healthz', () => {
    assert.match(dockerfile, /^USER node$/m);
    const nvmrc = read('.nvmrc').trim();
    for (const from of dockerfile.matchAll(/^FROM node:(\d+)/gm)) assert.equal(from[1], nvmrc);
    const defaults = parseConfig({
      amqp: { url: 'amqp://h' },
      postgrest: { url: 'http://h' },
      sources: [{ queue: 'q' }],
    });
    assert.match(dockerfile, new RegExp(`HEALTHCHECK[\\s\\S]*127\\.0\\.0\\.1:${defaults.http.port}/healthz`));
    assert.match(dockerfile, new RegExp(`EXPOSE ${defaults.http.port}`));
    assert.equal(
      (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node,
      `>=${nvmrc}`,
    );
  });
});
