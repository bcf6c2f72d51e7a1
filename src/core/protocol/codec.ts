/**
 * @module protocol/codec
 * The entry to the only modules that know the wire layout of docs/protocol.md §1: frames
 * (`[u32 BE length][payload]`), the envelope `{t, d}` with `d` as msgpack
 * bin, and the hook structs with their short keys. Used by the runner, the
 * edge worker, the SDK and the tests alike; Web standards and msgpackr only.
 * The parts: `msgpack.ts` (values), `frames.ts` (framing), `envelope.ts`
 * (`{t, d}`, the hot path), `structs.ts` (the hook structs).
 *
 * Encoding writes plain msgpack maps (no records, no extensions) so Go's
 * msgpack decodes them, and omits empty fields like Go's `omitempty`.
 * Decoding is lenient where the protocol says so (missing keys are zero
 * values, unknown keys are ignored) and strict about types: a field of the
 * wrong type is a `BAD_PAYLOAD` error naming the field.
 */

export { packValue, unpackValue } from './msgpack.ts';
export { decodeFrames, encodeFrame, FrameDecoder } from './frames.ts';
export { decodeEnvelope, encodeEnvelope, encodeEnvelopeFrame, encodeHookFrame, encodeResultFrame } from './envelope.ts';
export { decodeHookData, decodeHookResult, encodeHookData, encodeHookResult, hookDataOf, hookResultOf } from './structs.ts';
