/**
 * @module protocol
 * The prox plugin protocol (v1) as hookgate speaks it: hook types, limits,
 * the handshake variables and the hook structs with their short wire keys.
 * Types and constants only; the byte layout lives in `codec.ts`.
 *
 * Struct fields keep their wire names (`r`, `m`, `ok`, ...) so that grepping
 * docs/protocol.md finds the code and nothing is translated on the hot path.
 * Decoded structs always carry every field (missing keys become zero values);
 * encoders omit empty fields, as Go's `omitempty` does.
 */

/** Hook type numbers, as carried in the envelope's `t`. */
export const HOOK = {
  on_request: 1,
  on_response: 2,
  on_connect: 3,
  on_disconnect: 4,
} as const;

export type HookName = keyof typeof HOOK;
export type HookType = (typeof HOOK)[HookName];

/** Hook names in hook-type order; `HOOK_NAMES[t - 1]` is the name of type `t`. */
export const HOOK_NAMES: readonly HookName[] = ['on_request', 'on_response', 'on_connect', 'on_disconnect'];

/**
 * One bit per hook, for cheap "does this route have hook X" checks.
 *
 * @example
 * if (mask & HOOK_BIT.on_request) { ... }
 */
export const HOOK_BIT = {
  on_request: 1,
  on_response: 2,
  on_connect: 4,
  on_disconnect: 8,
} as const satisfies Record<HookName, number>;

/** Content type of a body of frames (docs/protocol.md §2, `POST /v1/hooks`). */
export const FRAMES_TYPE = 'application/vnd.hookgate.frames';

/** Largest frame payload either side accepts (docs/protocol.md §1): 1 MiB. */
export const MAX_PAYLOAD = 1_048_576;

/** Largest request body copy sent to a plugin whose binding asks for it: 64 KiB. */
export const MAX_BODY_COPY = 65_536;

/** Environment variable carrying the handshake cookie to a plugin started by a runner. */
export const MAGIC_COOKIE_KEY = 'HOOKGATE_PLUGIN_MAGIC_COOKIE';
/** The fixed cookie value; a plugin that does not see it was not started by a runner. */
export const MAGIC_COOKIE_VALUE = '9c1f4e7a2b5d48a3hookgate';
/** Environment variable listing the protocol versions the runner speaks. */
export const PROTOCOL_VERSIONS_KEY = 'HOOKGATE_PLUGIN_PROTOCOL_VERSIONS';
export const PROTOCOL_VERSION = '1';
/**
 * Environment variable naming a private folder (mode 0700) the runner made
 * for this plugin process's socket, and removes when the process is gone,
 * however it ended. The SDKs put their socket there.
 */
export const SOCKET_DIR_KEY = 'HOOKGATE_PLUGIN_SOCKET_DIR';
/** What the name of every such folder starts with (the keeper removes only folders named so). */
export const SOCKET_DIR_PREFIX = 'hookgate-plugin-';

/** A header map as plugins see it: one value per canonical name. */
export type HeaderMap = Record<string, string>;

/** on_request data, and `req` in on_response. */
export interface RequestInfo {
  /** route id */ r: string;
  /** method */ m: string;
  /** path */ p: string;
  /** raw query, without `?` */ q: string;
  /** host without port, lower case */ d: string;
  /** Host header */ ho: string;
  /** protocol, e.g. "HTTP/1.1" */ pr: string;
  /** remote address */ a: string;
  /** content length */ cl: number;
  /** headers, canonical names */ h: HeaderMap;
  /** body copy (at most 64 KiB), only when the binding asks for it */ bd: Uint8Array | null;
  /** matched domain pattern */ md: string;
  /** matched glob */ mg: string;
  /** matched path pattern */ mp: string;
  /** route variables */ v: Record<string, string>;
  /** selected target */ tg: string;
}

/** Speed limit carried by an on_request verdict. */
export interface SpeedLimit {
  /** download Mbps */ dl: number;
  /** upload Mbps */ ul: number;
  /** group key: limits with the same key share one budget */ gk: string;
}

/** on_request reply. */
export interface AuthorizeResult {
  /** allow */ ok: boolean;
  /** drop the connection without a response */ dr: boolean;
  /** use the action's fallback */ fb: boolean;
  /** status for a deny */ s: number;
  /** body for a deny */ b: string | Uint8Array;
  /** added upstream on allow; sent to the client on deny */ h: HeaderMap;
  /**
   * hookgate extension (prox plugins never send it): request header names
   * to remove before later plugins and the upstream see the request, on
   * allow. Applied before `h`, so a later plugin's `h` can set one again.
   */
  rm: string[];
  /** speed limit, or null */ sp: SpeedLimit | null;
  /** strip the query string */ cq: boolean;
  /** rewrite the upstream path */ rp: string;
  /**
   * hookgate addition, never sent by plugins: set when this verdict is a
   * binding's `on_error` verdict rather than a plugin's answer; says why.
   */
  e: string;
  /**
   * hookgate addition, runner → edge only (a plugin's is ignored): this
   * merged verdict must not be cached, because a binding's call failed and
   * its `on_error: allow` skipped it, or a cached verdict past its expiry
   * stood in for a failed call (`stale_if_error`).
   */
  nc?: boolean;
}

/** on_response data. */
export interface ResponsePair {
  /** the request as on_request saw it (the client's headers), with `tg` set */ req: RequestInfo;
  /** the upstream's response, as earlier plugins left it */
  resp: { /** upstream status */ s: number; /** upstream headers */ h: HeaderMap };
}

/** on_response reply. */
export interface ResponseModResult {
  /** new status, 0 keeps the upstream's */ s: number;
  /** headers to set */ h: HeaderMap;
  /** header names to remove */ rm: string[];
  /** hookgate addition: set when this is a failure verdict (see AuthorizeResult.e) */
  e: string;
  /** hookgate addition, with `e` only: the body to answer with instead of the upstream's */
  b: string;
}

/** on_connect data. */
export interface ConnInfo {
  /** route id */ r: string;
  /** host without port, lower case */ d: string;
  /** remote address */ a: string;
  /** matched domain pattern */ md: string;
  /** matched glob */ mg: string;
}

/** on_connect reply. */
export interface ConnResult {
  /** allow the WebSocket session */ ok: boolean;
  /** hookgate addition: see AuthorizeResult.e */
  e: string;
  /** hookgate additions, with `e` only: the status and body refusing the upgrade */
  s: number;
  b: string;
}

/** on_disconnect data (no reply). */
export interface DisconnectInfo {
  /** route id */ r: string;
  /** target */ tg: string;
  /** remote address */ a: string;
  /** bytes received */ rx: number;
  /** bytes sent */ tx: number;
  /** duration in ms */ ms: number;
}

/** Hook data by hook name. */
export interface HookData {
  on_request: RequestInfo;
  on_response: ResponsePair;
  on_connect: ConnInfo;
  on_disconnect: DisconnectInfo;
}

/** Hook replies by hook name (on_disconnect has none). */
export interface HookResult {
  on_request: AuthorizeResult;
  on_response: ResponseModResult;
  on_connect: ConnResult;
  on_disconnect: null;
}

/** Returns the name of hook type `t`, or undefined for an unknown type. */
export function hookName(t: number): HookName | undefined {
  return HOOK_NAMES[t - 1];
}
