import { App } from '../app.ts';
import { loadConfig } from '../config/config.ts';
import { ConfigError, toError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { defineCommand, EXIT } from './command.ts';
import { configOption } from './config-option.ts';

export const runCommand = defineCommand({
  name: 'run',
  summary: 'consume and enqueue until SIGTERM or SIGINT (the default command)',
  details: [
    'Logs JSON lines on stdout. SIGTERM or SIGINT drains in-flight deliveries for up to',
    'shutdown.graceMs and exits 0; a second signal exits at once with 1. Unfinished deliveries',
    'return to the broker either way.',
  ],
  options: { config: configOption },
  readsConfig: true,
  exitCodes: {
    [EXIT.ok]: 'stopped gracefully',
    [EXIT.failure]: 'fatal error, or forced by a second signal',
  },
  run: (values) => run(values.config),
});

async function run(path: string | undefined): Promise<number> {
  const config = loadConfig(path);
  const logger = createLogger(config.log.level);
  const app = new App(config, logger);

  // A sidecar that hits a bug exits and lets the orchestrator restart it; unacked deliveries
  // go back to the broker, so nothing is lost by dying.
  const fatal = (error: unknown, origin: string): void => {
    logger.fatal({ err: toError(error), origin }, 'fatal error; exiting');
    process.exit(EXIT.failure);
  };
  process.on('uncaughtException', (error) => fatal(error, 'uncaughtException'));
  process.on('unhandledRejection', (reason) => fatal(reason, 'unhandledRejection'));

  const stopped = new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) {
        logger.warn({ signal }, 'second signal: exiting now; unfinished deliveries return to the queue');
        process.exit(EXIT.failure);
      }
      signalled = true;
      logger.info(
        { signal, graceMs: config.shutdown.graceMs },
        'shutting down: draining in-flight deliveries',
      );
      app.stop().then(
        () => resolve(EXIT.ok),
        (error: unknown) => {
          logger.error({ err: toError(error) }, 'shutdown failed');
          resolve(EXIT.failure);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });

  logger.info(
    {
      sources: config.sources.map((s) => s.queue),
      endpoint: config.postgrest.url,
      mode: config.batch.enabled ? 'batch' : 'single',
      fn: config.batch.enabled ? config.batch.function : config.postgrest.function,
    },
    'starting',
  );
  try {
    await app.start();
  } catch (error) {
    // A fault found while starting (a port in use, an unreadable file) is the config's to fix.
    if (error instanceof ConfigError) await app.stop();
    throw error;
  }
  // The broker refusing the config before the first ready is not weather: one line, exit 78.
  const refused = app.startupFault.then(async (line) => {
    process.stderr.write(`pgq-bridge: ${line}\n`);
    await app.stop();
    return EXIT.config;
  });
  return Promise.race([stopped, refused]);
}
