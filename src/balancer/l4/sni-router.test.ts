import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SniRouter } from './sni-router.js';

test('exact beats wildcard, longest wildcard wins, default otherwise', () => {
  const r = new SniRouter(
    [
      { serverName: '*.example.com', pool: 'wide' },
      { serverName: '*.db.example.com', pool: 'db' },
      { serverName: 'api.example.com', pool: 'api' },
      { serverName: 'api.example.com', pool: 'ignored' },
    ],
    'fallback',
  );
  assert.equal(r.route('api.example.com'), 'api');
  assert.equal(r.route('a.db.example.com'), 'db');
  assert.equal(r.route('x.y.example.com'), 'wide');
  assert.equal(r.route('example.com'), 'fallback');
  assert.equal(r.route('other.test'), 'fallback');
  assert.equal(r.route(undefined), 'fallback');
});

test('without a default pool an unknown name has no route', () => {
  const r = new SniRouter([{ serverName: 'a.test', pool: 'a' }], undefined);
  assert.equal(r.route('b.test'), undefined);
  assert.equal(r.route(undefined), undefined);
});
