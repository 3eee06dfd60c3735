import { App, type AppOverrides } from '../../src/app.ts';
import { parseConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/log.ts';

/** Log records captured in memory, so tests can assert on them as objects. */
export class LogSink {
  readonly records: Array<Record<string, unknown>> = [];

  write(line: string): void {
    this.records.push(JSON.parse(line) as Record<string, unknown>);
  }

  find(predicate: (record: Record<string, unknown>) => boolean): Record<string, unknown> | undefined {
    return this.records.find(predicate);
  }
}

/** A bridge running in this process (faster to start than a child process). */
export async function startApp(
  rawConfig: Record<string, unknown>,
  overrides: AppOverrides = {},
): Promise<{ app: App; logs: LogSink }> {
  const config = parseConfig(rawConfig);
  const logs = new LogSink();
  const app = new App(config, createLogger('debug', logs), { processMetrics: false, ...overrides });
  await app.start();
  await app.waitUntilConnected();
  return { app, logs };
}

/** A counter's value from the app's registry (0 when the label set was never used). */
export async function metricValue(
  app: App,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Promise<number> {
  const metric = app.metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}
