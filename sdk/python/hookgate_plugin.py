"""Write a hookgate plugin in Python: one file, standard library only, Python 3.9+.

A hookgate plugin speaks the prox plugin protocol (v1), specified in
docs/protocol.md section 1. This module speaks it for you: it answers
``configure`` lines on stdin with ``{"result":"ok"}`` and ``ready``, serves
hook calls on a Unix socket in a private temporary folder (removed on
exit), and writes pushes and log lines to stdout::

    from hookgate_plugin import Plugin, allow, deny

    plugin = Plugin()

    @plugin.on_request
    def check(req):
        if req["h"].get("Authorization") == "Bearer s3cret":
            return allow({"X-User": "alice"})
        return deny(401, "unauthorized\\n", {"Www-Authenticate": "Bearer"})

    plugin.run()

Hook data arrives as dicts with the protocol's short keys, every key
present (a missing key is its zero value: ``""``, ``0``, ``False``, ``{}``,
or ``None`` for ``bd``). Handlers return the helpers' dicts (``allow()``,
``deny()`` ...), a dict for on_response, a bool for on_connect.

Contract:

* Only hooks with a handler are declared in ``ready``; a call for any
  other hook type gets no reply, as the protocol allows.
* Each connection carries one call at a time; the runner opens several, and
  each is served by its own thread, so handlers run concurrently and must
  be thread-safe.
* A handler that raises, or returns something that is not a valid reply,
  is logged through the runner and its connection is closed, so the runner
  applies the binding's ``on_error`` (deny 503 by default) rather than a
  made-up answer. A malformed or oversized frame closes its connection too.
  The plugin keeps serving either way.
* ``run()`` never returns: when the runner closes stdin, or on SIGTERM or
  SIGINT, it removes the socket folder, calls the ``on_stop`` handlers and
  exits the process with status 0. Started by hand (without the runner's
  handshake variables) it explains what the program is and exits 1.
* stdout belongs to the protocol: once ``run()`` has started, ``print()``
  and child processes' output go to stderr, which the runner logs line by
  line.
* What a verdict does (routing, merging plugins' verdicts, ``on_error``)
  is the runner's business (docs/protocol.md section 1.6); this module
  only carries it.

How to import it: the module is one file. Copy it next to your plugin
(Python looks in the script's folder first), or put the folder that holds
it on ``PYTHONPATH`` in the plugin's ``env`` in the runner's config (the
npm package ships it in ``sdk/python``). See docs/sdk.md.
"""

import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import traceback

__all__ = [
    "HOOKS",
    "MAX_BODY_COPY",
    "MAX_PAYLOAD",
    "MsgpackError",
    "Plugin",
    "ProtocolError",
    "allow",
    "clean_query",
    "decode_call",
    "deny",
    "drop",
    "encode_frame",
    "encode_reply",
    "fallback",
    "limit_speed",
    "packb",
    "rewrite_path",
    "unpackb",
    "with_header",
]

MAGIC_COOKIE_KEY = "HOOKGATE_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "9c1f4e7a2b5d48a3hookgate"
PROTOCOL_VERSIONS_KEY = "HOOKGATE_PLUGIN_PROTOCOL_VERSIONS"
PROTOCOL_VERSION = "1"
# A private folder the runner made for this process's socket; it removes it
# when the process is gone, even after a SIGKILL.
SOCKET_DIR_KEY = "HOOKGATE_PLUGIN_SOCKET_DIR"

#: Largest frame payload either side accepts: 1 MiB.
MAX_PAYLOAD = 1_048_576
#: Largest request body copy (``bd``) the runner sends: 64 KiB.
MAX_BODY_COPY = 65_536
#: Hook names in hook-type order: hook type ``t`` is ``HOOKS[t - 1]``.
HOOKS = ("on_request", "on_response", "on_connect", "on_disconnect")


# ---------------------------------------------------------------------------
# msgpack: what the protocol uses of https://github.com/msgpack/msgpack/blob/master/spec.md
# nil, bool, int (every width), float32/64, str, bin, array, map. No ext types.


class MsgpackError(ValueError):
    """Data that is not valid msgpack (truncated, an ext type, trailing bytes ...)."""


_MAX_DEPTH = 64


def packb(value):
    """Encodes a value as msgpack bytes, in the smallest encoding of each item.

    None is nil, bool is bool, int is int, float is float64, str is str,
    bytes (bytearray, memoryview) is bin, list and tuple are arrays, dict is a
    map. Anything else raises MsgpackError.

    >>> packb({"ok": True}).hex()
    '81a26f6bc3'
    """
    out = bytearray()
    _pack(value, out, 0)
    return bytes(out)


def _pack(v, out, depth):
    if depth > _MAX_DEPTH:
        raise MsgpackError("value nested too deeply")
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        _pack_int(v, out)
    elif isinstance(v, float):
        out.append(0xCB)
        out += struct.pack(">d", v)
    elif isinstance(v, str):
        b = v.encode("utf-8")
        _pack_head(out, len(b), 0xA0, 32, (0xD9, 0xDA, 0xDB), "str")
        out += b
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        _pack_head(out, len(b), None, 0, (0xC4, 0xC5, 0xC6), "bin")
        out += b
    elif isinstance(v, (list, tuple)):
        _pack_head(out, len(v), 0x90, 16, (None, 0xDC, 0xDD), "array")
        for item in v:
            _pack(item, out, depth + 1)
    elif isinstance(v, dict):
        _pack_head(out, len(v), 0x80, 16, (None, 0xDE, 0xDF), "map")
        for key, item in v.items():
            _pack(key, out, depth + 1)
            _pack(item, out, depth + 1)
    else:
        raise MsgpackError(f"cannot encode {type(v).__name__} as msgpack")


def _pack_head(out, n, fix, fix_limit, sized, kind):
    """Writes the type byte and length: the fix form below fix_limit, else 8-, 16- or 32-bit."""
    if fix is not None and n < fix_limit:
        out.append(fix | n)
    elif sized[0] is not None and n < 0x100:
        out += struct.pack(">BB", sized[0], n)
    elif n < 0x10000:
        out += struct.pack(">BH", sized[1], n)
    elif n < 0x100000000:
        out += struct.pack(">BI", sized[2], n)
    else:
        raise MsgpackError(f"{kind} too long for msgpack")


def _pack_int(n, out):
    if 0 <= n < 0x80:
        out.append(n)
    elif -32 <= n < 0:
        out.append(n & 0xFF)
    elif n >= 0:
        for limit, code, fmt in ((0x100, 0xCC, ">BB"), (0x10000, 0xCD, ">BH"), (0x100000000, 0xCE, ">BI"), (1 << 64, 0xCF, ">BQ")):
            if n < limit:
                out += struct.pack(fmt, code, n)
                return
        raise MsgpackError("int too large for msgpack")
    else:
        for limit, code, fmt in ((-0x80, 0xD0, ">Bb"), (-0x8000, 0xD1, ">Bh"), (-0x80000000, 0xD2, ">Bi"), (-(1 << 63), 0xD3, ">Bq")):
            if n >= limit:
                out += struct.pack(fmt, code, n)
                return
        raise MsgpackError("int too small for msgpack")


def unpackb(data):
    """Decodes exactly one msgpack value; raises MsgpackError for anything else.

    str becomes str, bin becomes bytes, arrays become lists, maps become dicts.

    >>> unpackb(bytes.fromhex("81a26f6bc3"))
    {'ok': True}
    """
    data = bytes(data)
    if not data:
        raise MsgpackError("empty payload is not msgpack")
    value, pos = _Unpacker(data).value(0, 0)
    if pos != len(data):
        raise MsgpackError(f"{len(data) - pos} trailing bytes after the msgpack value")
    return value


# fixed-size scalars: type byte -> (struct format, size)
_SCALARS = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}
# length-prefixed: type byte -> (kind, size of the length)
_SIZED = {
    0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4),
    0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4),
    0xDC: ("array", 2), 0xDD: ("array", 4),
    0xDE: ("map", 2), 0xDF: ("map", 4),
}


class _Unpacker:
    def __init__(self, data):
        self.data = data

    def take(self, pos, n):
        end = pos + n
        if end > len(self.data):
            raise MsgpackError("truncated msgpack data")
        return self.data[pos:end], end

    def value(self, pos, depth):
        if depth > _MAX_DEPTH:
            raise MsgpackError("msgpack data nested too deeply")
        if pos >= len(self.data):
            raise MsgpackError("truncated msgpack data")
        b = self.data[pos]
        pos += 1
        if b <= 0x7F:
            return b, pos
        if b >= 0xE0:
            return b - 0x100, pos
        if 0xA0 <= b <= 0xBF:
            return self.str(pos, b & 0x1F)
        if 0x90 <= b <= 0x9F:
            return self.array(pos, b & 0x0F, depth)
        if 0x80 <= b <= 0x8F:
            return self.map(pos, b & 0x0F, depth)
        if b == 0xC0:
            return None, pos
        if b == 0xC2:
            return False, pos
        if b == 0xC3:
            return True, pos
        if b in _SCALARS:
            fmt, size = _SCALARS[b]
            raw, pos = self.take(pos, size)
            return struct.unpack(fmt, raw)[0], pos
        if b in _SIZED:
            kind, size = _SIZED[b]
            raw, pos = self.take(pos, size)
            n = int.from_bytes(raw, "big")
            if kind == "bin":
                return self.take(pos, n)
            if kind == "str":
                return self.str(pos, n)
            if kind == "array":
                return self.array(pos, n, depth)
            return self.map(pos, n, depth)
        # 0xc1 (never used) and the ext family (0xc7-0xc9, 0xd4-0xd8)
        raise MsgpackError(f"unsupported msgpack type byte 0x{b:02x}")

    def str(self, pos, n):
        raw, pos = self.take(pos, n)
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError as err:
            raise MsgpackError("msgpack str is not valid UTF-8") from err

    def array(self, pos, n, depth):
        if n > len(self.data) - pos:  # every element takes at least one byte
            raise MsgpackError("truncated msgpack data")
        out = []
        for _ in range(n):
            item, pos = self.value(pos, depth + 1)
            out.append(item)
        return out, pos

    def map(self, pos, n, depth):
        if 2 * n > len(self.data) - pos:
            raise MsgpackError("truncated msgpack data")
        out = {}
        for _ in range(n):
            key, pos = self.value(pos, depth + 1)
            item, pos = self.value(pos, depth + 1)
            try:
                out[key] = item
            except TypeError as err:  # a map or array as a key
                raise MsgpackError("msgpack map key is a map or an array") from err
        return out, pos


# ---------------------------------------------------------------------------
# Frames, the envelope and the hook structs (docs/protocol.md section 1)


class ProtocolError(ValueError):
    """A frame, envelope, hook data or reply that breaks the protocol; names what is wrong."""


def encode_frame(payload):
    """Prefixes a payload with its u32 big-endian length; refuses payloads over 1 MiB.

    >>> encode_frame(packb({"ok": True})).hex()
    '0000000581a26f6bc3'
    """
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"frame payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD}")
    return len(payload).to_bytes(4, "big") + payload


def _text(v, path):
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    if isinstance(v, bytes):  # Go's []byte encodes as bin
        return v.decode("utf-8", "replace")
    raise ProtocolError(f"{path}: expected a string")


def _int(v, path):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v == v and v not in (float("inf"), float("-inf")):
        return int(v)
    if v is None:
        return 0
    raise ProtocolError(f"{path}: expected an integer")


def _bytes(v, path):
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    if v is None:
        return None
    raise ProtocolError(f"{path}: expected bin")


def _text_map(v, path):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ProtocolError(f"{path}: expected a map of strings")
    return {_text(k, path): _text(x, f"{path}[{k!r}]") for k, x in v.items()}


_REQUEST_FIELDS = (
    ("r", _text), ("m", _text), ("p", _text), ("q", _text), ("d", _text), ("ho", _text),
    ("pr", _text), ("a", _text), ("cl", _int), ("h", _text_map), ("bd", _bytes),
    ("md", _text), ("mg", _text), ("mp", _text), ("v", _text_map), ("tg", _text),
)
_RESPONSE_FIELDS = (("s", _int), ("h", _text_map))
_CONN_FIELDS = (("r", _text), ("d", _text), ("a", _text), ("md", _text), ("mg", _text))
_DISCONNECT_FIELDS = (("r", _text), ("tg", _text), ("a", _text), ("rx", _int), ("tx", _int), ("ms", _int))


def _map(v, path):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ProtocolError(f"{path}: expected a map")
    return v


def _struct(v, fields, path):
    o = _map(v, path)
    return {k: conv(o.get(k), f"{path}.{k}") for k, conv in fields}


def _hook_data(hook, v):
    if hook == "on_request":
        return _struct(v, _REQUEST_FIELDS, hook)
    if hook == "on_response":
        o = _map(v, hook)
        return {
            "req": _struct(o.get("req"), _REQUEST_FIELDS, f"{hook}.req"),
            "resp": _struct(o.get("resp"), _RESPONSE_FIELDS, f"{hook}.resp"),
        }
    if hook == "on_connect":
        return _struct(v, _CONN_FIELDS, hook)
    return _struct(v, _DISCONNECT_FIELDS, hook)


def decode_call(payload):
    """Decodes one call frame's payload (the envelope ``{t, d}``) into ``(hook, data)``.

    ``hook`` is the hook's name, or None for a hook type this protocol
    version does not know (such a call gets no reply). ``data`` is the hook
    data as a dict with every key of its struct. Raises MsgpackError or
    ProtocolError for anything malformed.

    >>> hook, data = decode_call(bytes.fromhex("82a17401a164c40581a170a12f"))
    >>> hook, data["p"], data["h"], data["bd"]
    ('on_request', '/', {}, None)
    """
    env = unpackb(payload)
    if not isinstance(env, dict):
        raise ProtocolError('envelope: expected a map with "t" and "d"')
    t = env.get("t")
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        raise ProtocolError("envelope.t: expected a positive integer hook type")
    d = env.get("d")
    if isinstance(d, str):
        d = d.encode("utf-8")
    elif d is None:
        d = b""
    elif not isinstance(d, bytes):
        raise ProtocolError("envelope.d: expected bin (the msgpack-encoded hook data)")
    if t > len(HOOKS):
        return None, None
    hook = HOOKS[t - 1]
    return hook, _hook_data(hook, unpackb(d) if d else {})


def _is_bool(v):
    return isinstance(v, bool)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str(v):
    return isinstance(v, str)


def _is_body(v):
    return isinstance(v, (str, bytes, bytearray))


def _is_text_map(v):
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def _is_text_list(v):
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


_EXPECTED = {
    _is_bool: "a bool", _is_int: "an int", _is_num: "a number", _is_str: "a str",
    _is_body: "a str or bytes", _is_text_map: "a dict of str to str", _is_text_list: "a list of str",
}
_SPEED_KEYS = (("dl", _is_num), ("ul", _is_num), ("gk", _is_str))
# Reply keys a plugin may send, with their checks, in the order src/core/protocol/codec.ts
# writes them (so a reply's bytes equal the TypeScript SDK's); None marks `sp`.
_REPLY_KEYS = {
    "on_request": (
        ("ok", _is_bool), ("dr", _is_bool), ("fb", _is_bool), ("s", _is_int), ("b", _is_body),
        ("h", _is_text_map), ("rm", _is_text_list), ("sp", None), ("cq", _is_bool), ("rp", _is_str),
    ),
    "on_response": (("s", _is_int), ("h", _is_text_map), ("rm", _is_text_list)),
    "on_connect": (("ok", _is_bool),),
}


def _empty(v):
    """Go's omitempty: nil, false, 0, and an empty str, bin, map or array."""
    if v is None or isinstance(v, bool):
        return v is not True
    if isinstance(v, (int, float)):
        return v == 0
    return isinstance(v, (str, bytes, bytearray, dict, list, tuple)) and len(v) == 0


def _compact(value, keys, path):
    """The reply map with empty fields omitted (Go's omitempty), every value type-checked."""
    if not isinstance(value, dict):
        raise ProtocolError(f"{path}: expected a dict, got {type(value).__name__}")
    known = {k for k, _ in keys}
    for k in value:
        if k not in known:
            raise ProtocolError(f"{path}: unknown key {k!r} (a plugin may send {', '.join(sorted(known))})")
    out = {}
    for k, check in keys:
        v = value.get(k)
        if _empty(v):
            continue
        if check is None:  # sp, a nested map
            v = _compact(v, _SPEED_KEYS, f"{path}.sp")
            if not v:
                continue
        elif not check(v):
            raise ProtocolError(f"{path}.{k}: expected {_EXPECTED[check]}, got {type(v).__name__}")
        out[k] = bytes(v) if isinstance(v, bytearray) else list(v) if isinstance(v, tuple) else v
    return out


def encode_reply(hook, value):
    """Encodes a handler's return value as the msgpack reply payload for ``hook``.

    on_request takes a verdict dict (see ``allow()``), on_response a dict
    with ``s``, ``h``, ``rm`` (or None: keep the response), on_connect a
    bool. Empty fields are omitted; an unknown key or a value of the wrong
    type raises ProtocolError naming it, so a typo fails closed instead of
    being dropped.

    >>> encode_reply("on_request", allow({"X-User": "alice"})).hex()
    '82a26f6bc3a16881a6582d55736572a5616c696365'
    """
    path = f"{hook} reply"
    if hook == "on_connect":
        if not isinstance(value, bool):
            raise ProtocolError(f"{path}: an on_connect handler must return True or False, got {type(value).__name__}")
        value = {"ok": value}
    elif hook == "on_response" and value is None:
        value = {}
    elif hook == "on_request" and value is None:
        raise ProtocolError(f"{path}: the handler returned None; return allow(), deny(), drop() or fallback()")
    if hook not in _REPLY_KEYS:
        raise ProtocolError(f"{hook} gets no reply")
    return packb(_compact(value, _REPLY_KEYS[hook], path))


# ---------------------------------------------------------------------------
# Verdict helpers (on_request replies). Each returns a new dict.


def allow(headers=None, remove=None):
    """Allows the request, adding ``headers`` to the upstream request.

    ``remove`` lists request header names to remove before the request goes
    upstream (``rm``, a hookgate extension; prox ignores it).

    >>> allow({"X-User": "alice"})
    {'ok': True, 'h': {'X-User': 'alice'}}
    """
    v = {"ok": True}
    if headers:
        v["h"] = dict(headers)
    if remove:
        v["rm"] = list(remove)
    return v


def deny(status=403, body="", headers=None):
    """Denies the request with ``status``, ``body`` (str or bytes) and ``headers`` sent to the client.

    >>> deny(401, "unauthorized\\n", {"Www-Authenticate": "Bearer"})
    {'ok': False, 's': 401, 'b': 'unauthorized\\n', 'h': {'Www-Authenticate': 'Bearer'}}
    """
    v = {"ok": False, "s": status}
    if body:
        v["b"] = body
    if headers:
        v["h"] = dict(headers)
    return v


def drop():
    """Closes the client's connection without any response."""
    return {"ok": False, "dr": True}


def fallback():
    """Serves the route action's ``fallback`` instead of the action."""
    return {"ok": False, "fb": True}


def with_header(verdict, name, value):
    """A copy of ``verdict`` with one more header (upstream on allow, to the client on deny).

    >>> with_header(allow(), "X-Tenant", "acme")
    {'ok': True, 'h': {'X-Tenant': 'acme'}}
    """
    v = dict(verdict)
    v["h"] = {**verdict.get("h", {}), name: value}
    return v


def rewrite_path(verdict, path):
    """A copy of an allow verdict that sends the request upstream with ``path`` instead."""
    return {**verdict, "rp": path}


def clean_query(verdict):
    """A copy of an allow verdict that strips the query string before the request goes upstream."""
    return {**verdict, "cq": True}


def limit_speed(verdict, download_mbps, upload_mbps=0, group_key=""):
    """A copy of an allow verdict with a speed limit in Mbps; requests with the same ``group_key`` share one budget.

    >>> limit_speed(allow(), 50, 10, "tenant-acme")
    {'ok': True, 'sp': {'dl': 50, 'ul': 10, 'gk': 'tenant-acme'}}
    """
    return {**verdict, "sp": {"dl": download_mbps, "ul": upload_mbps, "gk": group_key}}


# ---------------------------------------------------------------------------
# The plugin


_NOT_FROM_RUNNER = """\
This program is a hookgate plugin. It is meant to be started by the hookgate runner,
which talks to it over stdin/stdout and a Unix socket, not run by hand.
To try it, run:  npx hookgate plugin-call {program} --route api --data '{{"m":"GET","p":"/"}}'
or bind it to a route in a config file and run:  npx hookgate serve --config <file>
"""

_MAX_LINE = 1_048_576
# sun_path holds 108 bytes on Linux and 104 on macOS.
_MAX_SOCKET_PATH = 100


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT; not an Exception, so handlers' ``except Exception`` let it through."""


def _raise_stop(signum, frame):
    raise _Stop()


class _Log:
    """``plugin.log.info("message", key=value, ...)``: a ``log`` line the runner writes to its log."""

    def __init__(self, plugin):
        self._plugin = plugin

    def debug(self, message, **fields):
        self._plugin._log("debug", message, fields)

    def info(self, message, **fields):
        self._plugin._log("info", message, fields)

    def warn(self, message, **fields):
        self._plugin._log("warn", message, fields)

    def error(self, message, **fields):
        self._plugin._log("error", message, fields)


class Plugin:
    """One plugin: register handlers with the decorators, then call ``run()``.

    Lifecycle: ``run()`` checks the handshake, listens on a socket in a
    private folder (mode 0700) when at least one hook has a handler, then
    reads ``configure`` lines until stdin closes. Pushes and logs may be
    sent at any time from any thread; those sent before ``run()`` wait
    until the handshake has been checked. ``max_connections`` bounds the
    connections served at once (the runner opens ``pool_size``, 16 by
    default, plus one for on_disconnect); more are closed at once.
    """

    def __init__(self, max_connections=256):
        self.max_connections = max_connections
        self.log = _Log(self)
        self._handlers = {}
        self._on_configure = None
        self._on_stop = []
        self._out = None
        self._queued = []
        self._lock = threading.Lock()
        self._conns = 0
        self._dir = None
        self._socket = None
        self._server = None

    # Handlers ---------------------------------------------------------------

    def on_configure(self, fn):
        """Decorator: ``fn(params)`` runs for every ``configure`` (one per bound route, again after changes).

        ``params`` is ``{"route_id": ..., "match": {"domain": ..., "path": ...}}``
        (``match`` may be absent). Raise to reject it: the runner logs the
        message and no ``ready`` follows.
        """
        self._on_configure = fn
        return fn

    def on_request(self, fn):
        """Decorator: ``fn(req)`` decides what happens to a request; return allow(), deny(), drop() or fallback()."""
        self._handlers["on_request"] = fn
        return fn

    def on_response(self, fn):
        """Decorator: ``fn(pair)`` may change the upstream's response; return ``{"s", "h", "rm"}`` or None to keep it."""
        self._handlers["on_response"] = fn
        return fn

    def on_connect(self, fn):
        """Decorator: ``fn(info)`` gates a WebSocket session; return True to allow it."""
        self._handlers["on_connect"] = fn
        return fn

    def on_disconnect(self, fn):
        """Decorator: ``fn(info)`` is told when a WebSocket session ends (bytes, duration); its return value is ignored."""
        self._handlers["on_disconnect"] = fn
        return fn

    def on_stop(self, fn):
        """Decorator: ``fn()`` runs once before the plugin exits (atexit handlers do not run)."""
        self._on_stop.append(fn)
        return fn

    @property
    def hooks(self):
        """The hooks that have a handler, in hook-type order: what ``ready`` declares."""
        return [h for h in HOOKS if h in self._handlers]

    @property
    def socket_path(self):
        """The socket's path once ``run()`` listens on it, else None."""
        return self._socket

    # Pushes and logs --------------------------------------------------------

    def set_targets(self, targets, route_id=None, action=None):
        """Replaces the targets of the balancers addressed by ``route_id`` (``"*"``: every route with a balancer) or ``action``.

        ``targets`` is a list of ``host:port``, or a dict of group name to
        such a list (sub-pools chosen by the route's ``group_by``). Example::

            plugin.set_targets(["10.0.0.1:3000", "10.0.0.2:3000"], route_id="*")
            plugin.set_targets({"eu": ["10.0.1.1:3000"], "us": ["10.0.2.1:3000"]}, action="api")
        """
        params = _address(route_id, action)
        if isinstance(targets, dict):
            params["groups"] = {str(k): list(v) for k, v in targets.items()}
        else:
            params["targets"] = list(targets)
        self._send({"method": "set_targets", "params": params})

    def set_speed(self, route_id=None, action=None, download_mbps=0, upload_mbps=0, group_key=""):
        """Sets the default speed limit (Mbps) of the addressed routes; the same ``group_key`` shares one budget.

        A verdict's own limit (``limit_speed()``) overrides it. Example::

            plugin.set_speed(route_id="*", download_mbps=50, upload_mbps=10)
        """
        params = _address(route_id, action)
        for k, v in (("download_mbps", download_mbps), ("upload_mbps", upload_mbps), ("group_key", group_key)):
            if v:
                params[k] = v
        self._send({"method": "set_speed", "params": params})

    def _log(self, level, message, fields):
        params = {"level": level, "message": str(message)}
        if fields:
            params["args"] = [x for kv in fields.items() for x in kv]
        self._send({"method": "log", "params": params})

    def _send(self, msg):
        line = (json.dumps(msg, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        with self._lock:
            if self._out is None:
                self._queued.append(line)
            else:
                self._write(line)

    def _write(self, line):
        """Writes one stdout line and flushes it; the caller holds ``_lock``."""
        try:
            self._out.write(line)
            self._out.flush()
        except (OSError, ValueError):
            pass  # stdout is gone: so is the runner, and stdin EOF follows

    # Running ----------------------------------------------------------------

    def run(self):
        """Serves until the runner closes stdin or sends SIGTERM/SIGINT, then exits the process.

        Call it from the main thread, last. Never returns.
        """
        try:
            code = self._run()
        except BaseException:  # a bug or a failed bind: say why before exiting
            traceback.print_exc()
            code = 1
        self._exit(code)

    def _run(self):
        program = sys.argv[0] if sys.argv and sys.argv[0] else "<plugin>"
        if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
            sys.stderr.write(_NOT_FROM_RUNNER.format(program=program))
            return 1
        offered = [v.strip() for v in os.environ.get(PROTOCOL_VERSIONS_KEY, PROTOCOL_VERSION).split(",")]
        if PROTOCOL_VERSION not in offered:
            sys.stderr.write(
                f"{program} speaks hookgate plugin protocol version {PROTOCOL_VERSION}; the runner offers "
                f"{','.join(offered)}. Upgrade the plugin or the runner.\n"
            )
            return 1
        signal.signal(signal.SIGTERM, _raise_stop)
        signal.signal(signal.SIGINT, _raise_stop)
        try:
            with self._lock:
                self._out = _take_stdout()
                for line in self._queued:
                    self._write(line)
                self._queued = []
            if self.hooks:
                self._listen()
            self._read_stdin()
        except (_Stop, KeyboardInterrupt):
            pass
        return 0

    def _listen(self):
        given = os.environ.get(SOCKET_DIR_KEY, "")
        if given and len(os.path.join(given, "plugin.sock").encode()) <= _MAX_SOCKET_PATH:
            d = given  # the runner's: it removes the folder, we only our socket
        else:
            d = tempfile.mkdtemp(prefix="hookgate-plugin-")
            if len(os.path.join(d, "plugin.sock").encode()) > _MAX_SOCKET_PATH:  # a deep TMPDIR
                os.rmdir(d)
                d = tempfile.mkdtemp(prefix="hookgate-plugin-", dir="/tmp")
            self._dir = d
        path = os.path.join(d, "plugin.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(64)
        self._server = server
        self._socket = path
        threading.Thread(target=self._accept, args=(server,), name="hookgate-accept", daemon=True).start()

    def _read_stdin(self):
        stdin = sys.stdin.buffer
        skipping = False  # inside a line longer than _MAX_LINE
        while True:
            raw = stdin.readline(_MAX_LINE)
            if not raw:
                return  # EOF: the runner asks us to exit
            whole = raw.endswith(b"\n") or len(raw) < _MAX_LINE
            if skipping or not whole:
                if not skipping:
                    self.log.warn("ignored an over-long stdin line")
                skipping = not whole
                continue
            self._on_line(raw.decode("utf-8", "replace").strip())

    def _on_line(self, line):
        if not line:
            return
        try:
            msg = json.loads(line)
        except ValueError:
            self.log.warn("ignored a stdin line that is not JSON")
            return
        if not isinstance(msg, dict) or msg.get("method") != "configure":
            return
        params = msg.get("params")
        if not isinstance(params, dict):
            params = {"route_id": ""}
        try:
            if self._on_configure is not None:
                self._on_configure(params)
        except Exception as err:  # the plugin rejects this configure
            self._send({"error": str(err) or type(err).__name__})
            return
        self._send({"result": "ok"})
        ready = {"hooks": self.hooks}
        if self._socket:
            ready = {"socket": self._socket, "hooks": self.hooks}
        self._send({"method": "ready", "params": ready})

    def _accept(self, server):
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # the listening socket was closed: we are exiting
            with self._lock:
                full = self._conns >= self.max_connections
                if not full:
                    self._conns += 1
            if full:
                conn.close()
                self.log.warn("closed a hook connection over max_connections", max_connections=self.max_connections)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="hookgate-conn", daemon=True).start()

    def _serve(self, conn):
        """One connection: frames in, one call at a time; a reply for every call that has one."""
        try:
            while True:
                head = _recv_exact(conn, 4)
                if head is None:
                    return
                n = int.from_bytes(head, "big")
                if n > MAX_PAYLOAD:
                    raise ProtocolError(f"frame announces {n} bytes, over the limit of {MAX_PAYLOAD}")
                payload = _recv_exact(conn, n) if n else b""
                if payload is None:
                    raise ProtocolError("connection closed in the middle of a frame")
                hook, data = decode_call(payload)
                handler = self._handlers.get(hook) if hook else None
                if handler is None:
                    continue  # not ours: no reply, as the protocol says
                try:
                    out = handler(data)
                    if hook == "on_disconnect":
                        continue
                    reply = encode_frame(encode_reply(hook, out))
                except Exception as err:
                    self.log.error(f"{hook} failed; closing the connection so the runner applies on_error", error=str(err) or repr(err))
                    return
                conn.sendall(reply)
        except (ProtocolError, MsgpackError) as err:
            self.log.warn("closing a hook connection after a bad frame", error=str(err))
        except OSError:
            pass  # the runner closed its end
        finally:
            conn.close()
            with self._lock:
                self._conns -= 1

    def _exit(self, code):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self._server is not None:
            try:
                self._server.close()
            except OSError:
                pass
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        elif self._socket:
            try:
                os.unlink(self._socket)
            except OSError:
                pass
        for fn in self._on_stop:
            try:
                fn()
            except Exception as err:
                sys.stderr.write(f"on_stop handler failed: {err!r}\n")
        with self._lock:
            for stream in (self._out, sys.stderr, sys.__stderr__):
                try:
                    if stream is not None:
                        stream.flush()
                except (OSError, ValueError):
                    pass
        # Not sys.exit: connection threads may be blocked in recv(), and a
        # daemon thread holding stdout at interpreter shutdown aborts Python.
        os._exit(code)


def _take_stdout():
    """Keeps the protocol's stdout for the SDK alone and points fd 1 at stderr.

    A stray ``print()``, or a child process writing to its stdout, then
    reaches the runner's log instead of corrupting the protocol. The copy
    is not inherited by child processes (os.dup makes it non-inheritable).
    """
    sys.stdout.flush()
    proto = os.dup(1)
    os.dup2(2, 1)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a log line should not wait for exit
    return os.fdopen(proto, "wb")


def _address(route_id, action):
    if (route_id is None) == (action is None):
        raise ValueError("a push is addressed by exactly one of route_id (a route, or '*') and action")
    return {"route_id": route_id} if route_id is not None else {"action": action}


def _recv_exact(conn, n):
    """Reads exactly n bytes; None on a clean EOF before the first byte."""
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 65536))
        if not chunk:
            if not buf:
                return None
            raise ProtocolError("connection closed in the middle of a frame")
        buf += chunk
    return bytes(buf)
