/**
 * @module test/helpers/protocol
 * Builders for the protocol's structs (src/core/protocol/protocol.ts) in hook data.
 */

import type { RequestInfo } from '../../src/core/protocol/protocol.ts';

/** A complete RequestInfo: zero values for what `info` leaves out. */
export function requestInfo(info: Partial<RequestInfo>): RequestInfo {
  return { r: '', m: '', p: '', q: '', d: '', ho: '', pr: '', a: '', cl: 0, h: {}, bd: null, md: '', mg: '', mp: '', v: {}, tg: '', ...info };
}
