import { CONFIG_PATH_ENV } from '../config/env.ts';
import type { OptionSpec } from './command.ts';

/** `--config FILE` for every command that reads the bridge config. */
export const configOption = {
  type: 'string',
  short: 'c',
  value: 'FILE',
  description: `the config file (JSON) [${CONFIG_PATH_ENV}]`,
} as const satisfies OptionSpec;
