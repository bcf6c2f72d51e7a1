/**
 * @module errors
 * Typed errors with stable codes. Code that handles failures switches on
 * `code`, never on message text; messages say what happened and where.
 */

export type ErrorCode =
  /** a frame announced a payload over 1 MiB */
  | 'FRAME_TOO_LARGE'
  /** a stream ended in the middle of a frame */
  | 'FRAME_TRUNCATED'
  /** a payload is not valid msgpack, or not the shape the protocol requires */
  | 'BAD_PAYLOAD'
  /** a plugin's reply did not arrive before the call's deadline */
  | 'HOOK_TIMEOUT'
  /** the plugin's connection failed, closed, or the plugin is not ready */
  | 'PLUGIN_UNAVAILABLE'
  /** too many calls are already waiting for a connection */
  | 'POOL_SATURATED'
  /** a plugin's verdict is not allowed (hop-by-hop header, CR/LF, ...) */
  | 'BAD_VERDICT'
  /** a plugin binary does not match its pinned sha256 */
  | 'CHECKSUM_MISMATCH'
  /** a plugin could not be started */
  | 'SPAWN_FAILED'
  /** a state dir or socket folder others could tamper with (wrong owner, writable by others) */
  | 'UNSAFE_PATH'
  /** another runner holds the state dir */
  | 'STATE_DIR_LOCKED'
  /** the config is invalid */
  | 'BAD_CONFIG'
  /** the upstream could not be reached (connection refused, reset, DNS) */
  | 'UPSTREAM_CONNECT'
  /** the upstream did not answer within the action's timeout */
  | 'UPSTREAM_TIMEOUT'
  /** every connection the action may hold to the upstream stayed busy past its queue_timeout */
  | 'UPSTREAM_BUSY'
  /** the component was stopped */
  | 'STOPPED';

/**
 * The one error class of hookgate. `code` is stable; `message` is for people.
 *
 * @example
 * throw new HookgateError('FRAME_TOO_LARGE', 'frame of 2000000 bytes exceeds 1048576');
 */
export class HookgateError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'HookgateError';
  }
}

/** True when `err` is a HookgateError, optionally with the given code. */
export function isHookgateError(err: unknown, code?: ErrorCode): err is HookgateError {
  return err instanceof HookgateError && (code === undefined || err.code === code);
}
