#!/usr/bin/env python3
"""Bearer-token auth: an example hookgate plugin in plain Python 3 (stdlib only).

It speaks the prox plugin protocol (v1, PROTOCOL.md section 1) without any
SDK, to show that a plugin can be written in any language:

* stdin, one JSON object per line from the runner: ``configure`` calls.
  Closing stdin means "exit now".
* stdout, one JSON object per line: ``{"result":"ok"}`` for every configure,
  then ``ready`` with the Unix socket and the hooks served; ``log`` lines.
* the Unix socket: frames ``[u32 big-endian length][msgpack payload]``. The
  runner sends the envelope ``{"t": <hook type>, "d": <bin: hook data>}``;
  the plugin answers with the msgpack result map itself. One call at a time
  per connection; the runner opens several connections at once.

Only ``on_request`` (hook type 1) is served. A request carrying
``Authorization: Bearer <token>`` with a configured token is allowed and
gets ``X-User: <user>`` added upstream; anything else is denied with 401.

Configuration (environment):

  HOOKGATE_AUTH_TOKENS   comma-separated ``token:user`` pairs, for example
                         ``s3cret:alice,other:bob``. The user is what follows
                         the last colon, so a token may itself contain ``:``.
                         Unset: the demo token ``demo-token`` (user ``demo``)
                         is accepted and a warning is logged. Set but empty:
                         no token is accepted.

Try it:

  HOOKGATE_AUTH_TOKENS=s3cret:alice npx hookgate plugin-call examples/plugins/auth.py ...
"""

import hmac
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading

MAGIC_COOKIE_KEY = "HOOKGATE_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "9c1f4e7a2b5d48a3hookgate"
PROTOCOL_VERSIONS_KEY = "HOOKGATE_PLUGIN_PROTOCOL_VERSIONS"
PROTOCOL_VERSION = "1"

MAX_PAYLOAD = 1_048_576  # frames over 1 MiB are refused by both sides

HOOK_ON_REQUEST = 1
HOOK_ON_DISCONNECT = 4

DEMO_TOKENS = "demo-token:demo"


# ---------------------------------------------------------------------------
# msgpack: just enough of https://github.com/msgpack/msgpack/blob/master/spec.md
# nil, bool, int (every width), float32/64, str, bin, array, map. No ext.


class MsgpackError(ValueError):
    """Raised for data that is not valid msgpack (truncated, unknown type, ...)."""


def packb(value):
    """Encodes a Python value as msgpack bytes."""
    out = bytearray()
    _pack(value, out, 0)
    return bytes(out)


def _pack(v, out, depth):
    if depth > 64:
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
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += struct.pack(">BB", 0xD9, n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xDA, n)
        elif n < 0x100000000:
            out += struct.pack(">BI", 0xDB, n)
        else:
            raise MsgpackError("str too long")
        out += b
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        n = len(b)
        if n < 0x100:
            out += struct.pack(">BB", 0xC4, n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xC5, n)
        elif n < 0x100000000:
            out += struct.pack(">BI", 0xC6, n)
        else:
            raise MsgpackError("bin too long")
        out += b
    elif isinstance(v, (list, tuple)):
        n = len(v)
        if n < 16:
            out.append(0x90 | n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xDC, n)
        else:
            out += struct.pack(">BI", 0xDD, n)
        for item in v:
            _pack(item, out, depth + 1)
    elif isinstance(v, dict):
        n = len(v)
        if n < 16:
            out.append(0x80 | n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xDE, n)
        else:
            out += struct.pack(">BI", 0xDF, n)
        for key, item in v.items():
            _pack(key, out, depth + 1)
            _pack(item, out, depth + 1)
    else:
        raise MsgpackError(f"cannot encode {type(v).__name__}")


def _pack_int(n, out):
    if 0 <= n < 0x80:
        out.append(n)
    elif -32 <= n < 0:
        out.append(n & 0xFF)
    elif n >= 0:
        if n < 0x100:
            out += struct.pack(">BB", 0xCC, n)
        elif n < 0x10000:
            out += struct.pack(">BH", 0xCD, n)
        elif n < 0x100000000:
            out += struct.pack(">BI", 0xCE, n)
        elif n < 0x10000000000000000:
            out += struct.pack(">BQ", 0xCF, n)
        else:
            raise MsgpackError("int too large for msgpack")
    else:
        if n >= -0x80:
            out += struct.pack(">Bb", 0xD0, n)
        elif n >= -0x8000:
            out += struct.pack(">Bh", 0xD1, n)
        elif n >= -0x80000000:
            out += struct.pack(">Bi", 0xD2, n)
        elif n >= -0x8000000000000000:
            out += struct.pack(">Bq", 0xD3, n)
        else:
            raise MsgpackError("int too small for msgpack")


def unpackb(data):
    """Decodes exactly one msgpack value from bytes; raises MsgpackError otherwise."""
    data = bytes(data)
    if not data:
        raise MsgpackError("empty payload")
    value, pos = _Unpacker(data).value(0, 0)
    if pos != len(data):
        raise MsgpackError(f"{len(data) - pos} trailing bytes after the value")
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
            raise MsgpackError("truncated data")
        return self.data[pos:end], end

    def uint(self, pos, size):
        raw, pos = self.take(pos, size)
        return int.from_bytes(raw, "big"), pos

    def value(self, pos, depth):
        if depth > 64:
            raise MsgpackError("data nested too deeply")
        if pos >= len(self.data):
            raise MsgpackError("truncated data")
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
            n, pos = self.uint(pos, size)
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
            raise MsgpackError("str is not valid UTF-8") from err

    def array(self, pos, n, depth):
        if n > len(self.data) - pos:  # every element takes at least one byte
            raise MsgpackError("truncated data")
        out = []
        for _ in range(n):
            item, pos = self.value(pos, depth + 1)
            out.append(item)
        return out, pos

    def map(self, pos, n, depth):
        if 2 * n > len(self.data) - pos:
            raise MsgpackError("truncated data")
        out = {}
        for _ in range(n):
            key, pos = self.value(pos, depth + 1)
            item, pos = self.value(pos, depth + 1)
            try:
                out[key] = item
            except TypeError as err:  # a map or array as a key
                raise MsgpackError("unhashable map key") from err
        return out, pos


# ---------------------------------------------------------------------------
# stdout: one JSON object per line, flushed; several threads may write.

_stdout_lock = threading.Lock()


def send(obj):
    line = json.dumps(obj, separators=(",", ":")) + "\n"
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def log(level, message, *args):
    """A `log` line for the runner: level is debug, info, warn or error."""
    try:
        send({"method": "log", "params": {"level": level, "message": message, "args": [str(a) for a in args]}})
    except (OSError, ValueError):
        pass  # stdout is gone: the runner is gone too, and stdin EOF will follow


# ---------------------------------------------------------------------------
# Tokens and the on_request verdict


def load_tokens():
    """Returns [(token bytes, user)] from HOOKGATE_AUTH_TOKENS (demo token when unset)."""
    raw = os.environ.get("HOOKGATE_AUTH_TOKENS")
    if raw is None:
        log("warn", "HOOKGATE_AUTH_TOKENS is not set: accepting the demo token; "
            "set HOOKGATE_AUTH_TOKENS=token:user,... before real use",
            "token", "demo-token", "user", "demo")
        raw = DEMO_TOKENS
    tokens = []
    for number, entry in enumerate(raw.split(","), 1):
        entry = entry.strip()
        if not entry:
            continue
        token, sep, user = entry.rpartition(":")
        token, user = token.strip(), user.strip()
        if not sep or not token or not user:
            log("warn", "ignoring a HOOKGATE_AUTH_TOKENS entry that is not token:user",
                "entry", number)
            continue
        tokens.append((token.encode("utf-8"), user))
    if not tokens:
        log("error", "no usable token in HOOKGATE_AUTH_TOKENS: every request will get 401")
    return tokens


DENY = {"s": 401, "b": "unauthorized\n", "h": {"Www-Authenticate": "Bearer"}}


def bearer_token(headers):
    """The token of `Authorization: Bearer <token>` as bytes, or None."""
    if not isinstance(headers, dict):
        return None
    value = headers.get("Authorization")
    if value is None:  # names should arrive canonical; be lenient anyway
        for name, v in headers.items():
            if isinstance(name, str) and name.lower() == "authorization":
                value = v
                break
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8")


def authorize(tokens, info):
    presented = bearer_token(info.get("h") if isinstance(info, dict) else None)
    if presented is None:
        return DENY
    user = None
    for token, name in tokens:  # compare with every token: time does not tell which matched
        if hmac.compare_digest(presented, token) and user is None:
            user = name
    if user is None:
        return DENY
    return {"ok": True, "h": {"X-User": user}}


# ---------------------------------------------------------------------------
# The Unix socket


class BadFrame(Exception):
    """The connection is out of sync or sent nonsense: close it."""


def recv_exact(conn, n):
    """Reads exactly n bytes; None on a clean EOF before the first byte."""
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            if not buf:
                return None
            raise BadFrame("connection closed in the middle of a frame")
        buf += chunk
    return bytes(buf)


def handle_payload(tokens, payload):
    """Returns the reply payload, or None when the call gets no reply."""
    env = unpackb(payload)
    if not isinstance(env, dict):
        raise BadFrame("envelope is not a map")
    t = env.get("t")
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        raise BadFrame("envelope.t is not a positive integer")
    if t != HOOK_ON_REQUEST:
        return None  # on_disconnect never gets a reply; other hooks are not ours
    d = env.get("d")
    if isinstance(d, str):
        d = d.encode("utf-8")
    if not isinstance(d, bytes):
        raise BadFrame("envelope.d is not bin")
    info = unpackb(d)
    if not isinstance(info, dict):
        raise BadFrame("on_request data is not a map")
    return packb(authorize(tokens, info))


def serve_connection(conn, tokens):
    try:
        while True:
            head = recv_exact(conn, 4)
            if head is None:
                return
            n = int.from_bytes(head, "big")
            if n > MAX_PAYLOAD:
                raise BadFrame(f"frame of {n} bytes is over the 1 MiB limit")
            payload = recv_exact(conn, n) if n else b""
            if payload is None:
                raise BadFrame("connection closed in the middle of a frame")
            reply = handle_payload(tokens, payload)
            if reply is not None:
                conn.sendall(len(reply).to_bytes(4, "big") + reply)
    except (BadFrame, MsgpackError) as err:
        log("warn", "closing a hook connection after a bad frame", "reason", err)
    except OSError:
        pass  # the runner closed its end
    except Exception as err:  # never let one connection take the plugin down
        log("error", "closing a hook connection after an unexpected error", "reason", repr(err))
    finally:
        conn.close()


def accept_loop(server, tokens):
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return  # the listening socket was closed: we are exiting
        threading.Thread(target=serve_connection, args=(conn, tokens), daemon=True).start()


def make_socket_dir():
    """A private (0700) directory for the socket, short enough for sun_path."""
    d = tempfile.mkdtemp(prefix="hookgate-auth-")
    if len(os.path.join(d, "auth.sock").encode()) > 100:  # a long TMPDIR
        os.rmdir(d)
        d = tempfile.mkdtemp(prefix="hookgate-auth-", dir="/tmp")
    return d


# ---------------------------------------------------------------------------


NOT_FROM_RUNNER = """\
This is a hookgate plugin; it is meant to be started by the hookgate runner,
not by hand. The runner starts it, sends it its configuration on stdin and
calls it over a Unix socket. Try:

  npx hookgate plugin-call examples/plugins/auth.py ...

or bind it to a route in the runner's config.
"""


class _Stop(Exception):
    pass


def _on_signal(signum, frame):
    raise _Stop()


def main():
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(NOT_FROM_RUNNER)
        return 1
    versions = [v.strip() for v in os.environ.get(PROTOCOL_VERSIONS_KEY, PROTOCOL_VERSION).split(",")]
    if PROTOCOL_VERSION not in versions:
        sys.stderr.write(f"auth.py speaks plugin protocol version {PROTOCOL_VERSION}; "
                         f"the runner offers {','.join(versions)}. Upgrade the plugin or the runner.\n")
        return 1

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    sock_dir = None
    server = None
    try:
        tokens = load_tokens()
        sock_dir = make_socket_dir()
        sock_path = os.path.join(sock_dir, "auth.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(sock_path)
        server.listen(64)
        threading.Thread(target=accept_loop, args=(server, tokens), daemon=True).start()

        ready = {"method": "ready", "params": {"socket": sock_path, "hooks": ["on_request"]}}
        for raw in sys.stdin.buffer:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                log("warn", "ignoring a stdin line that is not JSON")
                continue
            if not isinstance(msg, dict) or msg.get("method") != "configure":
                log("warn", "ignoring an unknown stdin message",
                    "method", msg.get("method") if isinstance(msg, dict) else "")
                continue
            send({"result": "ok"})
            send(ready)
        return 0  # stdin closed: the runner asks us to exit
    except (_Stop, KeyboardInterrupt):
        return 0
    except BrokenPipeError:
        return 0  # stdout closed: the runner is gone
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
        if sock_dir is not None:
            shutil.rmtree(sock_dir, ignore_errors=True)


if __name__ == "__main__":
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)  # do not wait for connection threads blocked in recv()
