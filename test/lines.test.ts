/**
 * Splitting a plugin's stdout/stderr (and the SDK's stdin) into lines, with
 * a bound on line length.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LineSplitter, MAX_LINE } from '../node-runner/lines.ts';

/** A splitter that records what it delivers; `overflows` counts reported over-long lines. */
function recorder(maxLine?: number) {
  const lines: string[] = [];
  const seen = { overflows: 0 };
  const split = new LineSplitter(
    (l) => lines.push(l),
    () => seen.overflows++,
    maxLine,
  );
  return { split, lines, seen };
}

describe('LineSplitter', () => {
  test('the default limit is 1 MiB', () => {
    assert.equal(MAX_LINE, 1_048_576);
    assert.equal(new LineSplitter(() => {}).maxLine, MAX_LINE);
  });

  test('several lines in one chunk come out in order', () => {
    const { split, lines } = recorder();
    split.push('{"result":"ok"}\n{"method":"ready"}\n');
    assert.deepEqual(lines, ['{"result":"ok"}', '{"method":"ready"}']);
  });

  test('a line split across chunks comes out once, whole', () => {
    const { split, lines } = recorder();
    for (const chunk of ['{"meth', 'od":"lo', 'g"}', '\n{"x"', ':1}\n']) split.push(chunk);
    assert.deepEqual(lines, ['{"method":"log"}', '{"x":1}']);
  });

  test('a stream split at every position gives the same lines', () => {
    const text = 'alpha\r\nbeta\n\ngamma\r\n';
    for (let i = 0; i <= text.length; i++) {
      const { split, lines } = recorder();
      split.push(text.slice(0, i));
      split.push(text.slice(i));
      assert.deepEqual(lines, ['alpha', 'beta', '', 'gamma'], `split at ${i}`);
    }
  });

  test('CRLF line endings are stripped', () => {
    const { split, lines } = recorder();
    split.push(Buffer.from('one\r\ntwo\r\n'));
    assert.deepEqual(lines, ['one', 'two']);
  });

  test('a CR inside a line is kept', () => {
    const { split, lines } = recorder();
    split.push('a\rb\n');
    assert.deepEqual(lines, ['a\rb']);
  });

  test('empty lines are delivered as empty strings', () => {
    const { split, lines } = recorder();
    split.push('\n\r\n');
    assert.deepEqual(lines, ['', '']);
  });

  test('a line of exactly the limit is kept', () => {
    const { split, lines, seen } = recorder(8);
    split.push('12345678\n');
    assert.deepEqual(lines, ['12345678']);
    assert.equal(seen.overflows, 0);
  });

  test('an over-long line in one chunk is reported once and skipped; the next line still comes through', () => {
    const { split, lines, seen } = recorder(8);
    split.push('short\n123456789\nafter\n');
    assert.deepEqual(lines, ['short', 'after']);
    assert.equal(seen.overflows, 1);
  });

  test('an over-long line arriving in many chunks is reported once and skipped up to its newline', () => {
    const { split, lines, seen } = recorder(8);
    split.push('before\n');
    for (let i = 0; i < 100; i++) split.push('xxxxxxxxxxxx');
    split.push('tail of the long line\nafter\n');
    assert.deepEqual(lines, ['before', 'after']);
    assert.equal(seen.overflows, 1);
  });

  test('an over-long line that completes within the limit of its last chunk is still skipped', () => {
    const { split, lines, seen } = recorder(8);
    split.push('12345678');
    split.push('9\nnext\n');
    assert.deepEqual(lines, ['next']);
    assert.equal(seen.overflows, 1);
  });

  test('two over-long lines are reported twice', () => {
    const { split, lines, seen } = recorder(4);
    split.push('aaaaaa\nok\nbbbbbbbbbbbbb');
    split.push('bb\nok2\n');
    assert.deepEqual(lines, ['ok', 'ok2']);
    assert.equal(seen.overflows, 2);
  });

  test('end() flushes a last unterminated line', () => {
    const { split, lines } = recorder();
    split.push('first\nlast words');
    split.end();
    assert.deepEqual(lines, ['first', 'last words']);
  });

  test('end() after a complete line delivers nothing more', () => {
    const { split, lines } = recorder();
    split.push('only\n');
    split.end();
    assert.deepEqual(lines, ['only']);
  });

  test('end() in the middle of an over-long line delivers nothing', () => {
    const { split, lines, seen } = recorder(4);
    split.push('ok\n0123456789');
    split.end();
    assert.deepEqual(lines, ['ok']);
    assert.equal(seen.overflows, 1);
  });

  test('end() strips a trailing CR from the last unterminated line', () => {
    const { split, lines } = recorder();
    split.push('last\r');
    split.end();
    assert.deepEqual(lines, ['last']);
  });

  test('a UTF-8 character split across Buffer chunks comes out intact', () => {
    const { split, lines } = recorder();
    const bytes = Buffer.from('café ☕\n', 'utf8');
    split.push(bytes.subarray(0, 4));
    split.push(bytes.subarray(4));
    assert.deepEqual(lines, ['café ☕']);
  });
});
