import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { isArchlabError } from './errors.js';
import { createLogger } from './log.js';

function capture(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

describe('createLogger', () => {
  test('writes one JSON object per line with level, msg, name and fields', () => {
    const out = capture();
    const log = createLogger({ name: 'balancer', destination: out.stream, pretty: false });
    log.info({ backend: 'b1' }, 'picked');
    log.warn('slow');
    const lines = out.text().trimEnd().split('\n');
    assert.equal(lines.length, 2);
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(first.level, 30);
    assert.equal(first.msg, 'picked');
    assert.equal(first.name, 'balancer');
    assert.equal(first.backend, 'b1');
    assert.equal(typeof first.time, 'number');
    const second = JSON.parse(lines[1]!) as Record<string, unknown>;
    assert.equal(second.level, 40);
    assert.equal(second.msg, 'slow');
  });

  test('level filters lower levels; default is info; JSON is the default for a non-stdout stream', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream });
    log.debug('hidden');
    log.info('shown');
    const lines = out.text().trimEnd().split('\n');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0]!) as { msg: string }).msg, 'shown');

    const dbg = capture();
    createLogger({ level: 'debug', destination: dbg.stream }).debug('now shown');
    assert.match(dbg.text(), /"msg":"now shown"/);

    const silent = capture();
    createLogger({ level: 'silent', destination: silent.stream }).fatal('nothing');
    assert.equal(silent.text(), '');
  });

  test('errors are serialised with type, message and stack', () => {
    const out = capture();
    createLogger({ destination: out.stream }).error({ err: new RangeError('boom') }, 'failed');
    const line = JSON.parse(out.text()) as { err: { type: string; message: string; stack: string } };
    assert.equal(line.err.type, 'RangeError');
    assert.equal(line.err.message, 'boom');
    assert.match(line.err.stack, /boom/);
  });

  test('pretty: true writes human-readable lines synchronously', () => {
    const out = capture();
    createLogger({ name: 'cache', destination: out.stream, pretty: true }).info({ key: 'k' }, 'hit');
    const text = out.text();
    assert.match(text, /INFO/);
    assert.match(text, /hit/);
    assert.match(text, /cache/);
    assert.throws(() => JSON.parse(text));
  });

  test('an unknown level is refused with the accepted ones', () => {
    assert.throws(
      () => createLogger({ level: 'verbose' }),
      (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT') && /verbose/.test(e.message) && /debug/.test(e.message),
    );
  });
});
