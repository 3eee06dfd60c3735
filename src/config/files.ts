import { readFileSync } from 'node:fs';
import { ConfigError, toError } from '../errors.ts';

/** Reads a file the config names (a PEM certificate or key); a failure names the key to fix. */
export function readConfiguredFile(path: string | undefined, key: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError([`${key}: cannot read ${path}: ${toError(error).message}`]);
  }
}
