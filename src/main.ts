#!/usr/bin/env node
import { cli } from './cli/cli.ts';
import { toError } from './errors.ts';

cli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`pgq-bridge: ${toError(error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
