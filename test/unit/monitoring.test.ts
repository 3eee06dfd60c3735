import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { parser } from '@prometheus-io/lezer-promql';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/config.ts';
import { Metrics } from '../../src/metrics.ts';

/**
 * The alert rules and the dashboard are only as good as the names in their queries: every
 * query must parse as PromQL and use only series the bridge's registry exports.
 */
const root = new URL('../..', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

/** The series names a scrape can show, from the registry every bridge builds. */
async function exportedSeries(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const metric of await new Metrics().registry.getMetricsAsJSON()) {
    const suffixes: Readonly<Record<string, readonly string[]>> = {
      histogram: ['_bucket', '_sum', '_count'],
      summary: ['', '_sum', '_count'],
    };
    for (const suffix of suffixes[String(metric.type)] ?? ['']) names.add(`${metric.name}${suffix}`);
  }
  return names;
}

/** The metric names a PromQL expression selects; fails on a syntax error. */
function selectedMetrics(expr: string): string[] {
  const names: string[] = [];
  const errors: number[] = [];
  parser.parse(expr).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') {
        names.push(expr.slice(node.from, node.to));
      }
    },
  });
  assert.deepEqual(errors, [], `PromQL syntax error in: ${expr}`);
  return names;
}

/** Grafana's own variables, which PromQL does not know, replaced the way Grafana would. */
function asPromql(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replaceAll('$__interval', '1m');
}

interface Rule {
  readonly alert?: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

describe('deploy/prometheus/pgq-bridge.rules.yaml', () => {
  const file = parse(read('deploy/prometheus/pgq-bridge.rules.yaml')) as {
    groups: ReadonlyArray<{ name: string; rules: readonly Rule[] }>;
  };
  const rules = file.groups.flatMap((group) => group.rules);
  let exported: Set<string>;
  before(async () => {
    exported = await exportedSeries();
  });

  it('holds alerts with a severity, a summary, a description and a valid duration', () => {
    assert.ok(rules.length > 0);
    const names = new Set<string>();
    for (const rule of rules) {
      assert.match(rule.alert ?? '', /^PgqBridge[A-Z]\w+$/);
      assert.ok(!names.has(rule.alert ?? ''), `${rule.alert} once`);
      names.add(rule.alert ?? '');
      assert.ok(['warning', 'critical'].includes(rule.labels?.severity ?? ''), `${rule.alert} severity`);
      assert.ok(rule.annotations?.summary && rule.annotations.description, `${rule.alert} annotations`);
      if (rule.for !== undefined) assert.match(rule.for, /^\d+[smh]$/);
    }
  });

  it('uses only series the bridge exports, in expressions that parse', () => {
    for (const rule of rules) {
      const used = selectedMetrics(rule.expr);
      assert.ok(used.length > 0, `${rule.alert} selects a metric`);
      for (const name of used) assert.ok(exported.has(name), `${rule.alert}: ${name} is exported`);
    }
  });

  it('watches the endpoint, paused intake, dead letters, reconnects and held deliveries', () => {
    const watched = new Set(rules.flatMap((rule) => selectedMetrics(rule.expr)));
    for (const name of [
      'pgq_bridge_rpc_duration_seconds_count',
      'pgq_bridge_paused',
      'pgq_bridge_dead_lettered_total',
      'pgq_bridge_reconnects_total',
      'pgq_bridge_in_flight',
      'pgq_bridge_requeued_total',
    ]) {
      assert.ok(watched.has(name), name);
    }
  });

  it("compares in-flight bytes with the bridge's default intake limit", () => {
    const limit = parseConfig({
      amqp: { url: 'amqp://h' },
      postgrest: { url: 'http://h' },
      sources: [{ queue: 'q' }],
    }).intake.maxInFlightBytes;
    const rule = rules.find((r) => r.expr.includes('pgq_bridge_in_flight_bytes'));
    assert.match(rule?.expr ?? '', new RegExp(`\\* ${limit}\\b`));
  });
});

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly targets?: ReadonlyArray<{ readonly refId: string; readonly expr: string }>;
}

describe('deploy/grafana/pgq-bridge.json', () => {
  const dashboard = JSON.parse(read('deploy/grafana/pgq-bridge.json')) as {
    uid: string;
    panels: readonly Panel[];
    templating: { list: ReadonlyArray<{ name: string; definition?: string }> };
  };
  let exported: Set<string>;
  before(async () => {
    exported = await exportedSeries();
  });

  it('lays out panels with unique ids inside the 24-column grid', () => {
    assert.equal(dashboard.uid, 'pgq-bridge');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const panel of dashboard.panels) {
      assert.ok(panel.gridPos.x + panel.gridPos.w <= 24, panel.title);
      if (panel.type !== 'row') assert.ok((panel.targets ?? []).length > 0, `${panel.title} has a query`);
    }
  });

  it('queries only series the bridge exports, in expressions that parse', () => {
    const queries = dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
    );
    for (const { panel, expr } of queries) {
      const used = selectedMetrics(asPromql(expr));
      assert.ok(used.length > 0, `${panel} selects a metric`);
      for (const name of used) assert.ok(exported.has(name), `${panel}: ${name} is exported`);
    }
    for (const variable of dashboard.templating.list) {
      const metric = /^label_values\((\w+)/.exec(variable.definition ?? '')?.[1];
      if (metric !== undefined) assert.ok(exported.has(metric), `variable ${variable.name}: ${metric}`);
    }
  });

  it('filters every query by the instance variable', () => {
    for (const panel of dashboard.panels) {
      for (const target of panel.targets ?? [])
        assert.match(target.expr, /instance=~"\$instance"/, panel.title);
    }
  });
});
