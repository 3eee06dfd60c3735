import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { topLevelSpans } from '../../src/message/json-span.ts';

/** The source text of each top-level member, which is what callers slice out. */
function members(text: string): Record<string, string> {
  return Object.fromEntries(
    [...topLevelSpans(text)].map(([key, [start, end]]) => [key, text.slice(start, end)]),
  );
}

describe('topLevelSpans', () => {
  it('finds every kind of member value', () => {
    const text = '{"s":"x","n":-12.5e+3,"t":true,"f":false,"z":null,"o":{"a":[1]},"a":[{"b":2}],"e":""}';
    assert.deepEqual(members(text), {
      s: '"x"',
      n: '-12.5e+3',
      t: 'true',
      f: 'false',
      z: 'null',
      o: '{"a":[1]}',
      a: '[{"b":2}]',
      e: '""',
    });
  });

  it('returns exact start and end offsets', () => {
    const spans = topLevelSpans('{"a":1,"bb":[2]}');
    assert.deepEqual(
      [...spans],
      [
        ['a', [5, 6]],
        ['bb', [12, 15]],
      ],
    );
  });

  it('keeps whitespace inside values and leaves it out around them', () => {
    const text = ' \r\n{ "a" :\t{ "x" : [ 1 ,\n 2 ] } ,\n"b"  :  7 \n, "c":"q" }\n';
    assert.deepEqual(members(text), { a: '{ "x" : [ 1 ,\n 2 ] }', b: '7', c: '"q"' });
  });

  it('keeps big integers and number spellings exactly as written', () => {
    const text = '{"big":12345678901234567890,"arr":[9007199254740993, 1.0, 1E400]}';
    assert.deepEqual(members(text), { big: '12345678901234567890', arr: '[9007199254740993, 1.0, 1E400]' });
  });

  it('skips brackets, braces, commas and quotes inside strings', () => {
    const text = '{"a":"}],{\\"","b":{"k":"]}\\\\","l":["{"]},"c":3}';
    assert.deepEqual(members(text), { a: '"}],{\\""', b: '{"k":"]}\\\\","l":["{"]}', c: '3' });
  });

  it('decodes escaped key names', () => {
    const text = '{"p\\u0061yload":1,"a\\"b":2,"\\\\":3,"\\ud83d\\ude00":4}';
    assert.deepEqual(members(text), { payload: '1', 'a"b': '2', '\\': '3', '😀': '4' });
  });

  it('lets the last of duplicate keys win, as JSON.parse and PostgreSQL do', () => {
    const text = '{"a":{"first":1},"b":0,"a":[ "second" ]}';
    assert.deepEqual(members(text), { a: '[ "second" ]', b: '0' });
    assert.deepEqual(topLevelSpans(text).get('a'), [27, 39]);
  });

  it('handles non-ASCII text before a value (offsets are in UTF-16 units, like String.slice)', () => {
    const text = '{"é😀":"ü😀","v":{"w":"😀"}}';
    assert.deepEqual(members(text), { 'é😀': '"ü😀"', v: '{"w":"😀"}' });
  });

  it('finds nothing in an empty object', () => {
    assert.equal(topLevelSpans('{}').size, 0);
    assert.equal(topLevelSpans(' { \n } ').size, 0);
  });

  it('finds nothing when the text is not an object', () => {
    for (const text of ['[{"a":1}]', '"{\\"a\\":1}"', '42', 'null', '']) {
      assert.equal(topLevelSpans(text).size, 0, text);
    }
  });

  it('copes with deep nesting without recursion limits', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const text = `{"d":${deep},"after":1}`;
    assert.deepEqual(members(text), { d: deep, after: '1' });
  });

  it('agrees with JSON.parse on the values it finds', () => {
    const text = '{"a":{"x":[1,{"y":"}"}]},"b":"\\"}","c":[[],{}],"d":-0.5}';
    const parsed = JSON.parse(text) as Record<string, unknown>;
    for (const [key, [start, end]] of topLevelSpans(text)) {
      assert.deepEqual(JSON.parse(text.slice(start, end)), parsed[key], key);
    }
    assert.deepEqual([...topLevelSpans(text).keys()], Object.keys(parsed));
  });
});
