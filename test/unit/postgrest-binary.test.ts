import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { findPostgrest } from '../support/postgrest/binary.ts';

/** A directory holding only a `postgrest` script with this body, to be the whole PATH. */
function pathWithPostgrest(script: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgqb-postgrest-bin-'));
  dirs.push(dir);
  const file = join(dir, 'postgrest');
  writeFileSync(file, `#!/bin/sh\n${script}\n`);
  chmodSync(file, 0o755);
  return dir;
}
const dirs: string[] = [];

describe('findPostgrest', () => {
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('finds PostgREST 10.x, which answers --help but refuses --version', () => {
    const PATH = pathWithPostgrest(
      [
        'if [ "$1" = "--help" ]; then',
        '  echo "Usage: postgrest [-e|--example] [--dump-config | --dump-schema] [FILENAME]"',
        '  echo "  PostgREST 10.1.2 / create a REST API to an existing Postgres database"',
        '  exit 0',
        'fi',
        'echo "Invalid option \\`$1\'" >&2; exit 1',
      ].join('\n'),
    );
    assert.deepEqual(findPostgrest({ PATH }), {
      banner: 'PostgREST 10.1.2 / create a REST API to an existing Postgres database',
    });
  });

  it('finds nothing where no postgrest is on PATH, or one that fails', () => {
    const empty = mkdtempSync(join(tmpdir(), 'pgqb-no-bin-'));
    dirs.push(empty);
    assert.equal(findPostgrest({ PATH: empty }), undefined);
    assert.equal(findPostgrest({ PATH: pathWithPostgrest('exit 1') }), undefined);
  });
});
