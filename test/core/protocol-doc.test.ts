/**
 * docs/protocol.md stays true to the codec: every worked example's bytes
 * are what src/core/protocol/codec.ts writes for the JSON shown above them, and
 * every JSON example parses. On a mismatch the assertion shows the dump
 * the page should carry.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { encodeHookFrame, encodeResultFrame } from '../../src/core/protocol/codec.ts';
import type { HookName } from '../../src/core/protocol/protocol.ts';
import { PROTOCOL_DOC } from '../helpers/paths.ts';

const doc = readFileSync(PROTOCOL_DOC, 'utf8');

/** `xxd`-style dump: offset, 16 bytes in two groups of 8, the printable bytes. */
function hexDump(b: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < b.length; off += 16) {
    const row = [...b.subarray(off, off + 16)];
    const hex = row.map((x) => x.toString(16).padStart(2, '0'));
    const ascii = row.map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    lines.push(`${off.toString(16).padStart(4, '0')}  ${`${hex.slice(0, 8).join(' ')}  ${hex.slice(8).join(' ')}`.padEnd(49)} |${ascii}|`);
  }
  return lines.join('\n');
}

/** The fenced block right after `marker` (searched from `from`): its text and where it ends. */
function blockAfter(marker: string, from: number): { text: string; end: number } {
  const at = doc.indexOf(marker, from);
  assert.ok(at >= 0, `docs/protocol.md has no "${marker}" after offset ${from}`);
  const m = /```\w*\n([\s\S]*?)```/.exec(doc.slice(at));
  assert.ok(m, `no fenced block after "${marker}"`);
  return { text: m[1].trimEnd(), end: at + m.index + m[0].length };
}

test('the worked examples\' bytes in docs/protocol.md are what the codec writes for their JSON', () => {
  const examples = [...doc.matchAll(/<!-- worked-example: (call|reply) (\w+) -->/g)];
  assert.ok(examples.length >= 3, 'the page has its worked examples');

  for (const ex of examples) {
    const [, kind, hook] = ex;
    const json = blockAfter(ex[0], ex.index);
    const bytes = blockAfter('<!-- worked-example: bytes -->', json.end);
    const value = JSON.parse(json.text);

    const frame = kind === 'call' ? encodeHookFrame(hook as HookName, value) : encodeResultFrame(hook as HookName, value);

    assert.equal(bytes.text, hexDump(frame), `${kind} ${hook} ${json.text}`);
  }
});

test('every JSON example in docs/protocol.md parses', () => {
  const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)];
  assert.ok(blocks.length > 5);
  for (const [, text] of blocks) assert.doesNotThrow(() => JSON.parse(text), text);
});
