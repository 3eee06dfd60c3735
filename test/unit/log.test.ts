import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createLogger } from '../../src/log.ts';

it('redacts tokens and passwords wherever a log call puts them', () => {
  const lines: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
  logger.info(
    {
      authorization: 'Bearer secret-1',
      headers: { authorization: 'Bearer secret-2', accept: 'application/json' },
      postgrest: { bearerToken: 'secret-3' },
      password: 'secret-4',
      request: { token: 'secret-5' },
    },
    'request',
  );
  const record = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  assert.deepEqual(record.headers, { authorization: '[redacted]', accept: 'application/json' });
  assert.equal(record.authorization, '[redacted]');
  assert.deepEqual(record.postgrest, { bearerToken: '[redacted]' });
  assert.equal(record.password, '[redacted]');
  assert.deepEqual(record.request, { token: '[redacted]' });
  assert.doesNotMatch(lines.join(''), /secret-\d/);
});
