#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { App } from './app.ts';
import { type Config, loadConfig, maskSecrets } from './config/config.ts';
import { ConfigError, toError } from './errors.ts';
import { createLogger } from './log.ts';

/**
 * pgq-bridge [run] --config PATH      consume and enqueue until SIGTERM/SIGINT
 * pgq-bridge check-config --config PATH   validate; print the resolved config, secrets masked
 * pgq-bridge sql [--hardened] [--uninstall] [--NAME VALUE ...]   print the install SQL for psql
 *
 * Exit codes: 0 stopped gracefully (or config valid) · 1 fatal error or forced stop (second
 * signal) · 2 usage · 78 invalid configuration.
 */

export const EXIT = { ok: 0, fatal: 1, usage: 2, config: 78 } as const;

const USAGE = [
  'usage: pgq-bridge [run|check-config] --config PATH   (or set PGQ_BRIDGE_CONFIG)',
  '       pgq-bridge sql [--hardened] [--uninstall] [--api-schema S] [--queue-schema S] [--queue-table T]',
  '                      [--log-table T] [--function-name F] [--api-role R] ... | psql "$DATABASE_URL"',
].join('\n');

async function main(argv: readonly string[]): Promise<number> {
  const command = argv[0] !== undefined && !argv[0].startsWith('-') ? argv[0] : 'run';
  const rest = command === argv[0] ? argv.slice(1) : argv;
  if (command === 'help' || rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (command === 'sql') return printSql(rest);
  if (command !== 'run' && command !== 'check-config') {
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
    return EXIT.usage;
  }

  let config: Config;
  try {
    config = loadConfig(rest);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`pgq-bridge: ${error.message}\n`);
      return EXIT.config;
    }
    throw error;
  }
  if (command === 'check-config') {
    process.stdout.write(`${JSON.stringify(maskSecrets(config), null, 2)}\n`);
    return EXIT.ok;
  }
  return run(config);
}

/**
 * The SQL scripts ship with the bridge; names are psql variables, so printing `\\set` lines
 * ahead of the script is all it takes to install under other names.
 */
function printSql(args: readonly string[]): number {
  const file = `${args.includes('--uninstall') ? 'uninstall' : 'install'}${args.includes('--hardened') ? '-hardened' : ''}.sql`;
  const sets: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    if (arg === '--hardened' || arg === '--uninstall') continue;
    const value = args[i + 1];
    if (!arg.startsWith('--') || value === undefined) {
      process.stderr.write(`pgq-bridge sql: expected --name value, got ${JSON.stringify(arg)}\n${USAGE}\n`);
      return EXIT.usage;
    }
    const name = arg.slice(2).replaceAll('-', '_');
    if (!/^[a-z_]+$/.test(name)) {
      process.stderr.write(`pgq-bridge sql: bad option ${arg}\n`);
      return EXIT.usage;
    }
    sets.push(`\\set ${name} '${value.replaceAll("'", "''")}'`);
    i++;
  }
  let script: string;
  try {
    script = readFileSync(new URL(`../sql/${file}`, import.meta.url), 'utf8');
  } catch (error) {
    process.stderr.write(`pgq-bridge sql: ${toError(error).message}\n`);
    return EXIT.usage;
  }
  process.stdout.write(`${sets.join('\n')}${sets.length > 0 ? '\n' : ''}${script}`);
  return EXIT.ok;
}

async function run(config: Config): Promise<number> {
  const logger = createLogger(config.log.level);
  let app: App;
  try {
    app = new App(config, logger);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`pgq-bridge: ${error.message}\n`);
    return EXIT.config;
  }

  // A sidecar that hits a bug exits and lets the orchestrator restart it; unacked deliveries
  // go back to the broker, so nothing is lost by dying.
  const fatal = (error: unknown, origin: string): void => {
    logger.fatal({ err: toError(error), origin }, 'fatal error; exiting');
    process.exit(EXIT.fatal);
  };
  process.on('uncaughtException', (error) => fatal(error, 'uncaughtException'));
  process.on('unhandledRejection', (reason) => fatal(reason, 'unhandledRejection'));

  const stopped = new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) {
        logger.warn({ signal }, 'second signal: exiting now; unfinished deliveries return to the queue');
        process.exit(EXIT.fatal);
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
          resolve(EXIT.fatal);
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
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`pgq-bridge: ${error.message}\n`);
    await app.stop();
    return EXIT.config;
  }
  return stopped;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`pgq-bridge: ${toError(error).stack ?? String(error)}\n`);
    process.exitCode = EXIT.fatal;
  },
);
