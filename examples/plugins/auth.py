#!/usr/bin/env python3
"""Bearer-token auth: an example hookgate plugin in Python, on the Python SDK.

The SDK (sdk/python/hookgate_plugin.py, standard library only) speaks the
plugin protocol (docs/protocol.md section 1); this file only decides.

Only ``on_request`` is served. A request carrying
``Authorization: Bearer <token>`` with a configured token is allowed and
gets ``X-User: <user>`` added upstream; anything else is denied with 401
and a ``Www-Authenticate: Bearer`` challenge.

Configuration (environment):

  HOOKGATE_AUTH_TOKENS   comma-separated ``token:user`` pairs, for example
                         ``s3cret:alice,other:bob``. The user is what follows
                         the last colon, so a token may itself contain ``:``.
                         Unset: the demo token ``demo-token`` (user ``demo``)
                         is accepted and a warning is logged. Set but empty:
                         no token is accepted.

Try it:

  HOOKGATE_AUTH_TOKENS=s3cret:alice npx hookgate plugin-call examples/plugins/auth.py \\
    --route api --data '{"m":"GET","p":"/","h":{"Authorization":"Bearer s3cret"}}'
"""

import hmac
import os
import sys

try:
    import hookgate_plugin as hg
except ImportError:
    # Run from a hookgate checkout or its npm package, where the SDK is in
    # sdk/python. A plugin of your own would rather have the module next to
    # it, or its folder on PYTHONPATH (docs/sdk.md).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, os.pardir, "sdk", "python"))
    import hookgate_plugin as hg

DEMO_TOKENS = "demo-token:demo"
DENY = hg.deny(401, "unauthorized\n", {"Www-Authenticate": "Bearer"})

plugin = hg.Plugin()


def load_tokens():
    """Returns [(token bytes, user)] from HOOKGATE_AUTH_TOKENS (the demo token when unset)."""
    raw = os.environ.get("HOOKGATE_AUTH_TOKENS")
    if raw is None:
        plugin.log.warn("HOOKGATE_AUTH_TOKENS is not set: accepting the demo token; "
                        "set HOOKGATE_AUTH_TOKENS=token:user,... before real use",
                        token="demo-token", user="demo")
        raw = DEMO_TOKENS
    tokens = []
    for number, entry in enumerate(raw.split(","), 1):
        entry = entry.strip()
        if not entry:
            continue
        token, sep, user = entry.rpartition(":")
        token, user = token.strip(), user.strip()
        if not sep or not token or not user:
            plugin.log.warn("ignoring a HOOKGATE_AUTH_TOKENS entry that is not token:user", entry=number)
            continue
        tokens.append((token.encode("utf-8"), user))
    if not tokens:
        plugin.log.error("no usable token in HOOKGATE_AUTH_TOKENS: every request will get 401")
    return tokens


TOKENS = load_tokens()


def bearer_token(headers):
    """The token of `Authorization: Bearer <token>` as bytes, or None."""
    value = headers.get("Authorization")
    if value is None:  # names arrive canonical; be lenient anyway
        value = next((v for name, v in headers.items() if name.lower() == "authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8")


@plugin.on_request
def authorize(req):
    presented = bearer_token(req["h"])
    if presented is None:
        return DENY
    user = None
    for token, name in TOKENS:  # compare with every token: time does not tell which matched
        if hmac.compare_digest(presented, token) and user is None:
            user = name
    if user is None:
        return DENY
    return hg.allow({"X-User": user})


if __name__ == "__main__":
    plugin.run()
