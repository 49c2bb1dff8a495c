/**
 * Bad input, each case over a raw socket to a running proxy: every one is answered 400 or 403, is
 * logged with its reason, and the proxy keeps serving. Targets are parsed the way a real client
 * resolves them (WHATWG URL host parsing), so the ACL sees the host a client would reach.
 *
 * Two proxies:
 * - `acl`: an allow list (allowed.example) with 127.0.0.1 excepted from the SSRF guard, so an
 *   allowed name (resolved by a stub DNS to the loopback backend) really gets through;
 * - `guard`: no allow list, SSRF guard on with no exceptions: every spelling of loopback is refused
 *   by the guard itself (reason "ssrf").
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArchlabError } from '../../src/core/errors.js';
import { backend, connect, proxy, raw, viaProxy, type TestProxy } from './helpers.js';

interface Case {
  name: string;
  /** The raw request line's target. */
  target: string;
  method?: 'GET' | 'CONNECT';
  host?: string;
  status: number;
  reason: string;
}

test('bad input: each is refused with 400 or 403 and logged, and the proxy keeps serving', async (t) => {
  const b = await backend(t);
  const lookups: string[] = [];
  const lookup = async (h: string) => {
    lookups.push(h);
    if (h === 'allowed.example' || h === 'www.allowed.example' || h === 'sneaky.example') return [{ address: '127.0.0.1', family: 4 }];
    if (h === 'rebind.example') return [{ address: '93.184.215.14', family: 4 }, { address: '127.0.0.1', family: 4 }];
    if (h === 'evil.example') return [{ address: '93.184.215.14', family: 4 }];
    throw new ArchlabError('ENOTFOUND', `${h} not found`);
  };
  const acl = await proxy(t, { acl: { connectPorts: ['1-65535'], allow: [{ domain: 'allowed.example' }], ssrfGuard: { exceptions: ['127.0.0.1'] } } }, { lookup });
  const guard = await proxy(t, { acl: { connectPorts: ['1-65535'] } }, { lookup });
  const port = b.port;

  const cases: Array<Case & { proxy: TestProxy }> = [
    // Malformed CONNECT targets.
    { proxy: acl, name: 'CONNECT to a malformed target', method: 'CONNECT', target: 'exa$mple!:443', status: 400, reason: 'bad-target' },
    { proxy: acl, name: 'CONNECT without a port', method: 'CONNECT', target: 'allowed.example', status: 400, reason: 'no-port' },
    { proxy: acl, name: 'CONNECT with an empty port', method: 'CONNECT', target: 'allowed.example:', status: 400, reason: 'no-port' },
    { proxy: acl, name: 'CONNECT with a non-numeric port', method: 'CONNECT', target: 'allowed.example:https', status: 400, reason: 'no-port' },
    { proxy: acl, name: 'CONNECT to port 0', method: 'CONNECT', target: 'allowed.example:0', status: 400, reason: 'no-port' },
    { proxy: acl, name: 'CONNECT to port 70000', method: 'CONNECT', target: 'allowed.example:70000', status: 400, reason: 'no-port' },
    { proxy: acl, name: 'CONNECT with unbracketed IPv6', method: 'CONNECT', target: '::1:443', status: 400, reason: 'bad-target' },
    { proxy: acl, name: 'CONNECT with an IPv6 zone id', method: 'CONNECT', target: '[fe80::1%25lo]:443', status: 400, reason: 'bad-target' },
    // Userinfo tricks.
    { proxy: acl, name: 'CONNECT allowed.example@evil.example', method: 'CONNECT', target: `allowed.example@evil.example:${port}`, status: 400, reason: 'userinfo' },
    { proxy: acl, name: 'absolute-form allowed.example@evil.example', target: `http://allowed.example@evil.example:${port}/`, host: `evil.example:${port}`, status: 400, reason: 'userinfo' },
    { proxy: acl, name: 'absolute-form with user:password@', target: `http://allowed.example:x@evil.example:${port}/`, host: `evil.example:${port}`, status: 400, reason: 'userinfo' },
    // The ACL judges the host a client would reach.
    { proxy: acl, name: 'a name not on the allow list', target: `http://evil.example:${port}/`, status: 403, reason: 'acl-not-allowed' },
    { proxy: acl, name: 'trailing dot on a denied name', method: 'CONNECT', target: `evil.example.:${port}`, status: 403, reason: 'acl-not-allowed' },
    { proxy: acl, name: 'mixed case on a denied name', target: `http://EVIL.Example:${port}/`, status: 403, reason: 'acl-not-allowed' },
    { proxy: acl, name: 'percent-encoded denied name', target: `http://%65vil.example:${port}/`, host: `evil.example:${port}`, status: 403, reason: 'acl-not-allowed' },
    { proxy: acl, name: 'percent-encoded denied name on CONNECT', method: 'CONNECT', target: `%65vil.example:${port}`, status: 403, reason: 'acl-not-allowed' },
    // Node's parser refuses a backslash in a request target outright (a URL parser would read evil.example as the host).
    { proxy: acl, name: 'backslash before @', target: `http://evil.example\\@allowed.example:${port}/`, host: 'evil.example', status: 400, reason: 'malformed-request' },
    { proxy: acl, name: 'decimal IP not on the allow list', target: `http://2130706433:${port}/`, status: 403, reason: 'acl-not-allowed' },
    { proxy: acl, name: 'Host header naming another authority', target: `http://allowed.example:${port}/`, host: 'evil.example', status: 400, reason: 'host-mismatch' },
    { proxy: acl, name: 'Host header with another port', target: `http://allowed.example:${port}/`, host: 'allowed.example', status: 400, reason: 'host-mismatch' },
    { proxy: acl, name: 'Host header with userinfo', target: `http://allowed.example:${port}/`, host: `allowed.example@evil.example:${port}`, status: 400, reason: 'host-mismatch' },
    // The SSRF guard, on every spelling of loopback, and on what names resolve to.
    { proxy: guard, name: 'SSRF: 127.0.0.1 as decimal (absolute-form)', target: `http://2130706433:${port}/`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: 127.0.0.1 as decimal (CONNECT)', method: 'CONNECT', target: `2130706433:${port}`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: 127.0.0.1 as hex 0x7f.1', target: `http://0x7f.1:${port}/`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: 127.0.0.1 as octal 0177.0.0.1 (CONNECT)', method: 'CONNECT', target: `0177.0.0.1:${port}`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: percent-encoded 127.0.0.1', method: 'CONNECT', target: `%31%32%37.0.0.1:${port}`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: IPv6 literal [::1] (CONNECT)', method: 'CONNECT', target: '[::1]:443', status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: IPv6 literal [::1] (absolute-form)', target: `http://[::1]:${port}/`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: IPv4-mapped [::ffff:127.0.0.1]', method: 'CONNECT', target: '[::ffff:127.0.0.1]:443', status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: cloud metadata 169.254.169.254', target: 'http://169.254.169.254/latest/meta-data/', status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: a name resolving to loopback', target: `http://sneaky.example:${port}/`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: DNS answer mixing public and loopback', method: 'CONNECT', target: `rebind.example:${port}`, status: 403, reason: 'ssrf' },
    { proxy: guard, name: 'SSRF: trailing dot on loopback', method: 'CONNECT', target: `127.0.0.1.:${port}`, status: 403, reason: 'ssrf' },
  ];

  for (const c of cases) {
    const before = c.proxy.access().length;
    let status: number;
    let errorCode: string;
    if (c.method === 'CONNECT') {
      const r = await connect(c.proxy.port, c.target);
      status = r.status;
      errorCode = /x-archlab-error: (\S+)/.exec(r.head)?.[1] ?? '';
      r.socket.destroy();
    } else {
      const r = await raw(c.proxy.port, `GET ${c.target} HTTP/1.1\r\nHost: ${c.host ?? new URL(c.target.replace('\\', '/')).host}\r\nConnection: close\r\n\r\n`);
      status = r.status;
      errorCode = /x-archlab-error: (\S+)/i.exec(r.head)?.[1] ?? '';
    }
    assert.equal(status, c.status, `${c.name}: status`);
    assert.match(errorCode, /^ARCHLAB_PROXY_/, `${c.name}: error code header`);
    const line = c.proxy.access().at(-1);
    assert.equal(c.proxy.access().length, before + 1, `${c.name}: one access line`);
    assert.equal(line?.status, c.status, `${c.name}: logged status`);
    assert.equal(line?.reason, c.reason, `${c.name}: logged reason (${String(line?.error)})`);
    // The log says what was asked for: the parsed target when there is one, else the raw one.
    if (c.status === 403) assert.match(String(line?.target), /:\d+$/, `${c.name}: logged target`);
    else assert.ok(line?.target ?? line?.requested, `${c.name}: logged request target`);
  }
  assert.equal(b.seen.length, 0, 'nothing refused reached the backend');
  assert.ok(!lookups.includes('evil.example'), 'a name the allow list refuses is never looked up');

  // Still serving, and the allowed name in every spelling a client might use reaches the backend.
  for (const spelled of ['allowed.example', 'ALLOWED.Example', 'allowed.example.', '%61llowed.example', 'www.allowed.example']) {
    const r = await viaProxy(acl, `http://${spelled}:${port}/ok`, { headers: { host: `${spelled.replace('%61', 'a')}:${port}` } });
    assert.equal(r.status, 200, spelled);
  }
  const tunnel = await connect(acl.port, `Allowed.Example.:${port}`);
  assert.equal(tunnel.status, 200);
  tunnel.socket.destroy();
  assert.equal(b.seen.length, 5);
});

test('DNS rebinding: one lookup per request, and the proxy connects to the address it checked', async (t) => {
  const b = await backend(t);
  let calls = 0;
  // First answer: loopback (excepted here); any later answer would be an address never checked.
  const lookup = async () => (calls++ === 0 ? [{ address: '127.0.0.1', family: 4 }] : [{ address: '10.9.9.9', family: 4 }]);
  const p = await proxy(t, { acl: { ssrfGuard: { exceptions: ['127.0.0.1'] } } }, { lookup });
  const r = await viaProxy(p, `http://rebind.example:${b.port}/`);
  assert.equal(r.status, 200);
  assert.equal(calls, 1, 'resolved once');
  assert.equal(p.access().at(-1)!.address, '127.0.0.1');
});

test('a name that does not resolve answers 502, one that resolves too slowly 504', async (t) => {
  const p = await proxy(t, { timeouts: { connect: '200ms', drain: '1s' } }, {
    lookup: async (h) => {
      if (h === 'slow.example') await new Promise((r) => setTimeout(r, 1000));
      throw new ArchlabError('ENOTFOUND', `${h} not found`);
    },
  });
  const missing = await viaProxy(p, 'http://nowhere.example/');
  assert.equal(missing.status, 502);
  assert.equal(missing.headers['x-archlab-error'], 'ARCHLAB_PROXY_DNS');
  const slow = await connect(p.port, 'slow.example:443');
  assert.equal(slow.status, 504);
  slow.socket.destroy();
  assert.deepEqual(p.access().map((l) => l.reason), ['dns', 'dns-timeout']);
});

test('parse errors Node refuses before the proxy sees them are answered 400 and logged too', async (t) => {
  const p = await proxy(t);
  for (const line of ['GET http://exa mple.com/ HTTP/1.1', 'GARBAGE', 'GET http://example.com/ HTTP/9.9']) {
    const before = p.access().length;
    const r = await raw(p.port, `${line}\r\nHost: example.com\r\n\r\n`);
    assert.equal(r.status, 400, line);
    assert.equal(p.access().length, before + 1, line);
    assert.equal(p.access().at(-1)!.reason, 'malformed-request');
  }
  const big = await raw(p.port, `GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  assert.equal(big.status, 431);
  // Two Host headers: the router and a target could disagree on which counts.
  const twoHosts = await raw(p.port, 'GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nHost: evil.example\r\n\r\n');
  assert.equal(twoHosts.status, 400);
});

test('HTTP/1.1 without Host is refused 400 and logged; CONNECT needs no Host; HTTP/1.0 needs none', async (t) => {
  const b = await backend(t);
  const p = await proxy(t);
  const noHost = await raw(p.port, `GET http://127.0.0.1:${b.port}/ HTTP/1.1\r\nConnection: close\r\n\r\n`);
  assert.equal(noHost.status, 400);
  assert.equal(p.access().at(-1)!.reason, 'bad-target');
  const http10 = await raw(p.port, `GET http://127.0.0.1:${b.port}/old HTTP/1.0\r\n\r\n`);
  assert.equal(http10.status, 200);
  assert.equal(http10.body, 'ok /old');
  const tunnel = await raw(p.port, `CONNECT 127.0.0.1:${b.port} HTTP/1.1\r\n\r\n`, 300);
  assert.equal(tunnel.status, 200);
});
