import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { END, renderConfigReference, START } from '../../scripts/config-reference.ts';

it('the README configuration table matches the config schema (run `npm run docs:config`)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf(START) + START.length, readme.indexOf(END)).trim();
  assert.equal(section, renderConfigReference());
});
