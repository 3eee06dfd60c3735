import { loadConfig } from '../config/config.ts';
import { maskSecrets } from '../config/mask.ts';
import { poolWarnings } from '../config/sizing.ts';
import { defineCommand, EXIT } from './command.ts';
import { configOption } from './config-option.ts';

export const checkConfigCommand = defineCommand({
  name: 'check-config',
  summary: 'validate the config and print it resolved, secrets masked',
  details: [
    'Prints the config with defaults and environment overrides applied as JSON on stdout.',
    "Warnings (e.g. the sources' total concurrency above postgrest.dbPool) go to stderr",
    'and do not change the exit code.',
  ],
  options: { config: configOption },
  readsConfig: true,
  exitCodes: { [EXIT.ok]: 'the config is valid (warnings, if any, on stderr)' },
  run(values) {
    const config = loadConfig(values.config);
    process.stdout.write(`${JSON.stringify(maskSecrets(config), null, 2)}\n`);
    for (const warning of poolWarnings(config)) process.stderr.write(`pgq-bridge: warning: ${warning}\n`);
    return EXIT.ok;
  },
});
