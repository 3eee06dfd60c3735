import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findCycles } from '../../scripts/check-cycles.ts';

describe('findCycles', () => {
  it('finds a cycle through several modules and ignores imports from outside', () => {
    const graph = new Map([
      ['a', ['b', 'outside']],
      ['b', ['c']],
      ['c', ['a']],
      ['d', ['a']],
    ]);
    assert.deepEqual(findCycles(graph), [['a', 'b', 'c', 'a']]);
  });

  it('finds none in a tree with shared leaves', () => {
    const graph = new Map([
      ['a', ['b', 'c']],
      ['b', ['c']],
      ['c', []],
    ]);
    assert.deepEqual(findCycles(graph), []);
  });
});
