import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, type IConfigMap, type IContainer } from 'kubernetes-models/v1';
import { parse, parseAllDocuments } from 'yaml';
import { type Config, parseConfig } from '../../src/config/config.ts';
import { type KubernetesObject, unknownFields } from '../support/kubernetes-fields.ts';

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

/** The Kubernetes kinds the manifests may use, each with its model generated from the API's OpenAPI schema. */
const MODELS: Readonly<Record<string, { new (data: never): { validate(): void } }>> = {
  'v1/ConfigMap': ConfigMap,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

/** Bytes in a Kubernetes memory quantity such as 256Mi. */
function bytes(quantity: string | number | undefined): number {
  const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(String(quantity));
  assert.ok(match, `memory quantity ${quantity}`);
  return Number(match[1]) * 1024 ** ['', 'Ki', 'Mi', 'Gi'].indexOf(match[2] ?? '');
}

const KUBERNETES_FILES = readdirSync(new URL('deploy/kubernetes/', root)).filter((f) => f.endsWith('.yaml'));

describe('deploy/kubernetes', () => {
  it('uses only fields that the Kubernetes API knows, as a strict field validation would', () => {
    const objects = KUBERNETES_FILES.flatMap((file) =>
      parseAllDocuments(read(`deploy/kubernetes/${file}`)).map((doc) => {
        const object = doc.toJS() as KubernetesObject;
        return { where: `${file} ${object.kind}`, object };
      }),
    );
    assert.ok(objects.length > 0);
    assert.deepEqual(unknownFields(objects), []);
  });
});

for (const file of KUBERNETES_FILES) {
  describe(`deploy/kubernetes/${file}`, () => {
    const docs = parseAllDocuments(read(`deploy/kubernetes/${file}`)).map(
      (doc) => doc.toJS() as { apiVersion: string; kind: string },
    );
    const deployment = docs.find((d) => d.kind === 'Deployment') as IDeployment;
    const pod = deployment.spec?.template.spec;
    assert.ok(pod);
    const bridge = pod.containers.find((c) => c.name === 'pgq-bridge') as IContainer;
    assert.ok(bridge, 'a pgq-bridge container');
    const mountOf = (volume: string) => bridge.volumeMounts?.find((m) => m.name === volume);
    const volumeAt = (path: string) => {
      const mount = bridge.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `a volume mounted above ${path}`);
      const volume = pod.volumes?.find((v) => v.name === mount.name);
      assert.ok(volume);
      return { volume, file: path.slice(mount.mountPath.length + 1) };
    };
    const configPath = bridge.args?.[bridge.args.indexOf('--config') + 1] ?? '';
    const configVolume = volumeAt(configPath);
    const configMap = docs.find(
      (d) =>
        d.kind === 'ConfigMap' && (d as IConfigMap).metadata?.name === configVolume.volume.configMap?.name,
    ) as IConfigMap;
    const configJson = JSON.parse(configMap?.data?.[configVolume.file] ?? 'null') as unknown;
    const config: Config = parseConfig(configJson, { PGQ_BRIDGE_AMQP_URL: 'amqp://user:pass@rabbitmq:5672' });

    it('holds only objects that are valid against the Kubernetes API schemas', () => {
      for (const doc of docs) {
        const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
        assert.ok(Model, `a known kind: ${doc.apiVersion} ${doc.kind}`);
        new Model(doc as never).validate();
      }
    });

    it("runs the bridge on a config from the ConfigMap that the bridge's own parser accepts", () => {
      assert.deepEqual(bridge.args?.slice(0, 2), ['run', '--config']);
      assert.ok(configVolume.volume.configMap, 'the config comes from a ConfigMap');
      assert.equal(mountOf(configVolume.volume.name)?.readOnly, true);
      parseConfig(configJson);
    });

    it('reads the PostgREST token from a mounted Secret, and the broker URL from a Secret', () => {
      const tokenFile = config.postgrest.bearerTokenFile;
      assert.ok(tokenFile, 'postgrest.bearerTokenFile');
      const token = volumeAt(tokenFile);
      assert.ok(token.volume.secret?.secretName);
      assert.ok(token.volume.secret.items?.some((item) => item.path === token.file));
      const amqp = bridge.env?.find((e) => e.name === 'PGQ_BRIDGE_AMQP_URL');
      assert.ok(amqp?.valueFrom?.secretKeyRef, 'PGQ_BRIDGE_AMQP_URL from a Secret');
      assert.doesNotMatch(
        configMap.data?.[configVolume.file] ?? '',
        /:[^/@\s"]+@/,
        'no credentials in the ConfigMap',
      );
    });

    it('probes liveness on /healthz and readiness on /readyz, at the port the config listens on', () => {
      const port = bridge.ports?.find((p) => p.name === bridge.livenessProbe?.httpGet?.port);
      assert.equal(port?.containerPort, config.http.port);
      assert.equal(bridge.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(bridge.readinessProbe?.httpGet?.path, '/readyz');
      assert.equal(bridge.readinessProbe?.httpGet?.port, bridge.livenessProbe?.httpGet?.port);
    });

    it("gives the bridge's drain time to finish before the pod is killed", () => {
      const grace = pod.terminationGracePeriodSeconds ?? 30;
      assert.ok(
        grace > config.shutdown.graceMs / 1000,
        `${grace} s > shutdown.graceMs ${config.shutdown.graceMs}`,
      );
      // A container the bridge calls must outlive the drain: it is held back until the drain is over.
      for (const container of pod.containers.filter((c) => c.lifecycle?.preStop)) {
        const sleep = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
        assert.ok(sleep >= config.shutdown.graceMs / 1000 && sleep < grace, `${container.name} preStop`);
      }
    });

    it('sets requests and limits, with room for intake.maxInFlightBytes under the memory limit', () => {
      for (const container of pod.containers) {
        assert.ok(container.resources?.requests?.cpu && container.resources.requests.memory, container.name);
        assert.ok(container.resources.limits?.memory, container.name);
      }
      assert.ok(bytes(bridge.resources?.limits?.memory) >= 2 * config.intake.maxInFlightBytes);
    });

    it('runs every container as non-root, unprivileged, with no capabilities', () => {
      assert.equal(pod.securityContext?.runAsNonRoot, true);
      assert.ok((pod.securityContext?.runAsUser ?? 0) > 0, 'a numeric non-root user the kubelet can verify');
      assert.equal(pod.automountServiceAccountToken, false);
      for (const container of pod.containers) {
        assert.equal(container.securityContext?.allowPrivilegeEscalation, false, container.name);
        assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL'], container.name);
      }
      assert.equal(bridge.securityContext?.readOnlyRootFilesystem, true);
    });

    it('keeps a replica up through voluntary disruptions', () => {
      const budget = docs.find((d) => d.kind === 'PodDisruptionBudget') as PodDisruptionBudget;
      assert.ok(budget, 'a PodDisruptionBudget');
      const labels = deployment.spec?.template.metadata?.labels ?? {};
      for (const [key, value] of Object.entries(budget.spec?.selector?.matchLabels ?? {})) {
        assert.equal(labels[key], value, `the budget selects the pods by ${key}`);
      }
      const replicas = deployment.spec?.replicas ?? 1;
      assert.ok(replicas >= 2);
      const spec = budget.spec;
      assert.ok(spec);
      assert.ok(
        spec.minAvailable !== undefined
          ? Number(spec.minAvailable) < replicas
          : Number(spec.maxUnavailable) >= 1,
      );
    });

    it("keeps the bridge's calls within the pool of a PostgREST in the same pod", () => {
      const pool = pod.containers.flatMap((c) => c.env ?? []).find((e) => e.name === 'PGRST_DB_POOL');
      const total = config.sources.reduce((sum, source) => sum + source.concurrency, 0);
      if (pool === undefined) return;
      assert.equal(
        config.postgrest.dbPool,
        Number(pool.value),
        'postgrest.dbPool is the pool PostgREST gets',
      );
      assert.ok(total <= Number(pool.value), `${total} calls, pool ${pool.value}`);
    });

    it('names only Secrets that deploy/kubernetes/README.md says how to create', () => {
      const guide = read('deploy/kubernetes/README.md');
      const secrets = [
        ...pod.containers.flatMap((c) => c.env ?? []).map((e) => e.valueFrom?.secretKeyRef?.name),
        ...(pod.volumes ?? []).map((v) => v.secret?.secretName),
      ].filter((name) => name !== undefined);
      for (const name of secrets) assert.match(guide, new RegExp(`kubectl create secret generic ${name}\\b`));
    });
  });
}
