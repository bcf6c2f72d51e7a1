/**
 * Header names and values between HTTP and plugins (docs/protocol.md §1: header
 * maps carry one value per Go-canonical name).
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalHeaderName, headerMapProblem, headerProblem, toHeaderMap } from '../../src/core/protocol/headers.ts';

describe('canonicalHeaderName follows Go\'s CanonicalMIMEHeaderKey', () => {
  const cases: Array<[string, string]> = [
    ['x-forwarded-for', 'X-Forwarded-For'],
    ['CONTENT-TYPE', 'Content-Type'],
    ['www-authenticate', 'Www-Authenticate'],
    ['authorization', 'Authorization'],
    ['content-md5', 'Content-Md5'],
    ['x-b3_traceid', 'X-B3_traceid'],
    ['a', 'A'],
    ['-x-', '-X-'],
    ['X-Already-Canonical', 'X-Already-Canonical'],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} becomes ${JSON.stringify(expected)}`, () => {
      assert.equal(canonicalHeaderName(input), expected);
    });
  }

  const unchanged = ['x forwarded', 'x-a ', 'bad:name', 'x-ü', 'x-a\r\n', '(x)', ''];
  for (const input of unchanged) {
    test(`${JSON.stringify(input)} is not a token and is returned unchanged`, () => {
      assert.equal(canonicalHeaderName(input), input);
    });
  }

  test('the same name in different cases always gives the same answer', () => {
    const answers = ['ACCEPT-ENCODING', 'accept-encoding', 'Accept-Encoding', 'aCCEPT-eNCODING'].map(canonicalHeaderName);
    assert.deepEqual(answers, ['Accept-Encoding', 'Accept-Encoding', 'Accept-Encoding', 'Accept-Encoding']);
  });

  test('stays correct after thousands of distinct names', () => {
    for (let i = 0; i < 5000; i++) canonicalHeaderName(`x-name-${i}`);
    assert.equal(canonicalHeaderName('x-name-4999'), 'X-Name-4999');
    assert.equal(canonicalHeaderName('x-name-1'), 'X-Name-1');
  });
});

describe('toHeaderMap', () => {
  test('canonicalizes names and joins repeated values with ", "', () => {
    const map = toHeaderMap([
      ['x-forwarded-for', '198.51.100.1'],
      ['X-FORWARDED-FOR', '10.0.0.1'],
      ['accept', 'text/html'],
    ]);
    assert.deepEqual(map, { 'X-Forwarded-For': '198.51.100.1, 10.0.0.1', Accept: 'text/html' });
  });

  test('keeps only the first Set-Cookie', () => {
    const map = toHeaderMap([
      ['set-cookie', 'a=1; Path=/'],
      ['Set-Cookie', 'b=2'],
      ['SET-COOKIE', 'c=3'],
    ]);
    assert.deepEqual(map, { 'Set-Cookie': 'a=1; Path=/' });
  });

  test('reads a Web Headers object, whose Set-Cookie values come separately', () => {
    const headers = new Headers();
    headers.append('set-cookie', 'session=abc');
    headers.append('set-cookie', 'theme=dark');
    headers.append('cache-control', 'no-cache');
    headers.append('cache-control', 'no-store');
    headers.set('content-type', 'application/json');
    assert.deepEqual(toHeaderMap(headers), {
      'Set-Cookie': 'session=abc',
      'Cache-Control': 'no-cache, no-store',
      'Content-Type': 'application/json',
    });
  });

  test('no headers give an empty map', () => {
    assert.deepEqual(toHeaderMap([]), {});
  });
});

describe('headerProblem: what a plugin may not set', () => {
  const forbidden = [
    'Connection',
    'connection',
    'Keep-Alive',
    'Proxy-Authenticate',
    'proxy-authorization',
    'Proxy-Connection',
    'TE',
    'Trailer',
    'Transfer-Encoding',
    'TRANSFER-ENCODING',
    'Upgrade',
    'Host',
    'host',
    'Content-Length',
    'CONTENT-LENGTH',
  ];
  for (const name of forbidden) {
    test(`${name} may not be set by a plugin`, () => {
      assert.equal(headerProblem(name, 'x'), `header "${name}" may not be set by a plugin`);
    });
  }

  const invalidNames = ['X User', 'X:User', '', 'X-Ünicode', 'X-User\r\n', '(comment)', 'X/Y'];
  for (const name of invalidNames) {
    test(`${JSON.stringify(name)} is not a valid HTTP token`, () => {
      assert.equal(headerProblem(name, 'x'), `header name ${JSON.stringify(name)} is not a valid HTTP token`);
    });
  }

  const badValues: Array<[string, string]> = [
    ['a CR', 'alice\rx'],
    ['a LF', 'alice\nHost: evil'],
    ['CRLF smuggling', 'a\r\nHost: evil'],
    ['a NUL', 'alice\0'],
  ];
  for (const [what, value] of badValues) {
    test(`a value with ${what} is refused`, () => {
      assert.equal(headerProblem('X-User', value), 'header "X-User": value contains CR, LF or NUL');
    });
  }

  const fine: Array<[string, string]> = [
    ['X-User', 'alice'],
    ['Authorization', 'Bearer abc.def'],
    ['Set-Cookie', 'a=1; Path=/; HttpOnly'],
    ['Cache-Control', 'no-store'],
    ['x-lower-case', 'fine'],
    ['X-Empty', ''],
    ['X-Tab', 'a\tb "quoted", (x)'],
    ['Proxy-Status', 'hookgate; error=timeout'],
    ['Content-Type', 'text/plain; charset=utf-8'],
  ];
  for (const [name, value] of fine) {
    test(`${name}: ${JSON.stringify(value)} is fine`, () => {
      assert.equal(headerProblem(name, value), '');
    });
  }
});

describe('headerMapProblem', () => {
  test('a map of fine headers has no problem', () => {
    assert.equal(headerMapProblem({ 'X-User': 'alice', 'X-Roles': 'admin, dev' }), '');
  });

  test('an empty map has no problem', () => {
    assert.equal(headerMapProblem({}), '');
  });

  test('reports the first bad header, naming it', () => {
    const problem = headerMapProblem({ 'X-User': 'alice', 'Transfer-Encoding': 'chunked', 'X-Evil': 'a\nb' });
    assert.equal(problem, 'header "Transfer-Encoding" may not be set by a plugin');
  });

  test('reports a bad value', () => {
    assert.equal(headerMapProblem({ 'X-Evil': 'a\r\nHost: evil' }), 'header "X-Evil": value contains CR, LF or NUL');
  });
});
