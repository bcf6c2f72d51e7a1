#!/usr/bin/env node
/**
 * Example plugin: bearer-token auth, written with the hookgate SDK.
 *
 * Tokens come from HOOKGATE_AUTH_TOKENS, a comma-separated list of
 * `token:user` pairs (default `demo-token:demo`). A request with
 * `Authorization: Bearer <token>` is allowed and gets `X-User: <user>`
 * upstream; anything else is denied with 401. Tokens are compared in
 * constant time (only a token's length can be learned, as with Go's
 * subtle.ConstantTimeCompare).
 */
import { timingSafeEqual } from 'node:crypto';
import { allow, createPlugin, deny } from 'hookgate/sdk';

const plugin = createPlugin();

const raw = process.env.HOOKGATE_AUTH_TOKENS;
const tokens = (raw ?? 'demo-token:demo')
  .split(',')
  .map((pair) => pair.trim())
  .filter(Boolean)
  .map((pair) => {
    const i = pair.lastIndexOf(':');
    return { token: Buffer.from(i > 0 ? pair.slice(0, i) : pair), user: i > 0 ? pair.slice(i + 1) : 'user' };
  });

const UNAUTHORIZED = deny(401, 'unauthorized\n', { 'Www-Authenticate': 'Bearer' });

plugin
  .onConfigure((params) => {
    if (raw === undefined) plugin.log.warn('HOOKGATE_AUTH_TOKENS is not set; accepting the demo token', { route: params.route_id });
  })
  .onRequest((req) => {
    const auth = req.h['Authorization'] ?? '';
    if (!auth.startsWith('Bearer ')) return UNAUTHORIZED;
    const given = Buffer.from(auth.slice(7).trim());
    let user = '';
    for (const t of tokens) if (t.token.length === given.length && timingSafeEqual(t.token, given)) user = t.user;
    return user ? allow({ 'X-User': user }) : UNAUTHORIZED;
  });

await plugin.start();
