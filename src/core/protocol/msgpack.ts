/**
 * @module protocol/msgpack
 * msgpack as the protocol writes it: plain maps (no records, no
 * extensions, so Go's msgpack decodes them) and the strict decode every
 * payload goes through. The one Packr the codec modules share.
 */

import { C1, Packr } from 'msgpackr';
import { HookgateError } from '../errors.ts';

/** The shared packer: plain maps, numbers as numbers (int64 too). */
export const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  moreTypes: false,
  int64AsType: 'number',
});

export const utf8 = new TextDecoder();
export const utf8enc = new TextEncoder();

/**
 * Encodes any plain value as msgpack (plain maps, no extensions).
 *
 * @example
 * const bytes = packValue({ state: 'v42' });
 */
export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

/**
 * Decodes msgpack bytes; throws `BAD_PAYLOAD` when they are not valid
 * msgpack or hold trailing bytes.
 */
export function unpackValue(bytes: Uint8Array): unknown {
  if (bytes.length === 0) throw new HookgateError('BAD_PAYLOAD', 'empty payload is not msgpack');
  let v: unknown;
  try {
    v = packr.unpack(bytes);
  } catch (err) {
    throw new HookgateError('BAD_PAYLOAD', `payload is not valid msgpack (${(err as Error).message})`, { cause: err });
  }
  // msgpackr hands back a marker object for the never-used type byte 0xc1.
  if (v === C1) throw new HookgateError('BAD_PAYLOAD', 'payload is not valid msgpack (type byte 0xc1 is never used)');
  return v;
}

/** A decoded msgpack map: a plain object (not an array, bin, Date from a timestamp, or marker). */
export function isMap(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
