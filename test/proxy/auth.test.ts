/** Proxy-Authorization through a running proxy: 407s that say nothing, credentials never forwarded, cache. */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { userLine } from '../../src/proxy/auth.js';
import { backend, basic, connect, curl, echoServer, findCurl, proxy, raw, viaProxy } from './helpers.js';

const FAST = { N: 1024, r: 8, p: 1 };

async function authProxy(t: TestContext) {
  const users = [await userLine('alice', 'wonderland', FAST), await userLine('bob', 'builder', FAST)];
  return proxy(t, { auth: { users, cacheTtl: '1m' }, admin: { port: 0, token: 'tok' } });
}

/** Everything about a response a client could compare, except Date. */
function fingerprint(r: { status: number; head: string; body: string }): string {
  return `${r.status}\n${r.head.replace(/\r\ndate: [^\r]*/i, '')}\n${r.body}`;
}

test('407 with Proxy-Authenticate when credentials are missing, malformed, wrong or for an unknown user; all identical', async (t) => {
  const b = await backend(t);
  const p = await authProxy(t);
  const url = `http://127.0.0.1:${b.port}/`;
  const ask = (auth?: string) => raw(p.port, `GET ${url} HTTP/1.1\r\nHost: 127.0.0.1:${b.port}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}Connection: close\r\n\r\n`);
  const missing = await ask();
  const malformed = await ask('Basic %%%');
  const wrong = await ask(basic('alice', 'nope'));
  const unknown = await ask(basic('mallory', 'wonderland'));
  assert.equal(missing.status, 407);
  assert.match(missing.head, /\r\nproxy-authenticate: Basic realm="archlab", charset="UTF-8"/i);
  assert.equal(fingerprint(wrong), fingerprint(unknown), 'unknown user and wrong password look the same');
  assert.equal(fingerprint(missing), fingerprint(wrong));
  assert.equal(fingerprint(malformed), fingerprint(wrong));
  assert.equal(b.seen.length, 0);
  // The access log keeps the failure without the attempted name or password.
  const lines = p.access().filter((l) => l.status === 407);
  assert.equal(lines.length, 4);
  assert.ok(lines.every((l) => l.user === null && l.reason === 'auth'));
  assert.ok(!JSON.stringify(p.logs).includes('mallory'));

  const ok = await viaProxy(p, url, { headers: { 'proxy-authorization': basic('alice', 'wonderland') } });
  assert.equal(ok.status, 200);
  assert.equal(b.seen[0]!.headers['proxy-authorization'], undefined, 'credentials for the proxy never reach the target');
  assert.equal(p.access().at(-1)!.user, 'alice');
});

test('CONNECT needs credentials too; verified ones are cached, so scrypt runs once per credential', async (t) => {
  const echo = await echoServer(t);
  const p = await authProxy(t);
  const denied = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.equal(denied.status, 407);
  assert.match(denied.head, /proxy-authenticate: Basic realm="archlab"/i);
  for (let i = 0; i < 5; i++) {
    const tunnel = await connect(p.port, `127.0.0.1:${echo.port}`, { 'Proxy-Authorization': basic('bob', 'builder') });
    assert.equal(tunnel.status, 200);
    tunnel.socket.destroy();
  }
  const stats = (await (await fetch(`${p.admin!.url}/stats`, { headers: { authorization: 'Bearer tok' } })).json()) as { scryptRuns: number };
  assert.equal(stats.scryptRuns, 1, 'one scrypt for five tunnels with the same credential');
  const metrics = await (await fetch(`${p.admin!.url}/metrics`)).text();
  assert.match(metrics, /archlab_proxy_auth_failures_total\{reason="missing",server="proxy"\} 1/);
  assert.match(metrics, /archlab_proxy_auth_checks_total\{result="hit",server="proxy"\} 4/);
});

test('curl --proxy-user authenticates; curl without it gets 407', async (t) => {
  if (!(await findCurl())) return t.skip('curl not installed');
  const b = await backend(t);
  const p = await authProxy(t);
  const url = `http://127.0.0.1:${b.port}/c`;
  const ok = await curl(['-x', p.url, '--proxy-user', 'alice:wonderland', url]);
  assert.equal(ok.stdout, 'ok /c', ok.stderr);
  const inUrl = await curl(['-x', `http://bob:builder@127.0.0.1:${p.port}`, url]);
  assert.equal(inUrl.stdout, 'ok /c', inUrl.stderr);
  const no = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-x', p.url, url]);
  assert.equal(no.stdout, '407');
});
