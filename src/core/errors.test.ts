import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ArchlabError, InvalidArgumentError, isArchlabError } from './errors.js';

class NoBackendError extends ArchlabError {
  constructor(pool: string) {
    super('ARCHLAB_NO_BACKEND', `no healthy backend in pool ${pool}`, { retryable: true, details: { pool } });
  }
}

describe('ArchlabError', () => {
  test('carries code, message, retryable (default false), details and the subclass name', () => {
    const err = new ArchlabError('ARCHLAB_X', 'went wrong');
    assert.equal(err.code, 'ARCHLAB_X');
    assert.equal(err.message, 'went wrong');
    assert.equal(err.retryable, false);
    assert.equal(err.details, undefined);
    assert.equal(err.name, 'ArchlabError');
    assert.ok(err instanceof Error);
    assert.match(err.stack ?? '', /went wrong/);

    const sub = new NoBackendError('web');
    assert.equal(sub.name, 'NoBackendError');
    assert.equal(sub.retryable, true);
    assert.deepEqual(sub.details, { pool: 'web' });
    assert.ok(sub instanceof ArchlabError);
  });

  test('keeps the cause only when given', () => {
    const cause = new RangeError('root');
    assert.equal(new ArchlabError('A', 'm', { cause }).cause, cause);
    assert.equal('cause' in new ArchlabError('A', 'm'), false);
  });

  test('toJSON gives a plain object that survives JSON.stringify', () => {
    const err = new NoBackendError('api');
    assert.deepEqual(JSON.parse(JSON.stringify(err)), {
      name: 'NoBackendError',
      code: 'ARCHLAB_NO_BACKEND',
      message: 'no healthy backend in pool api',
      retryable: true,
      details: { pool: 'api' },
    });
  });
});

describe('InvalidArgumentError', () => {
  test('has the stable code, is not retryable, keeps details', () => {
    const err = new InvalidArgumentError('n must be positive', { n: -1 });
    assert.equal(err.code, 'ARCHLAB_INVALID_ARGUMENT');
    assert.equal(err.retryable, false);
    assert.deepEqual(err.details, { n: -1 });
    assert.equal(err.name, 'InvalidArgumentError');
  });
});

describe('isArchlabError', () => {
  test('matches by class and, optionally, code', () => {
    const err = new InvalidArgumentError('x');
    assert.equal(isArchlabError(err), true);
    assert.equal(isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), true);
    assert.equal(isArchlabError(err, 'ARCHLAB_OTHER'), false);
    assert.equal(isArchlabError(new TypeError('x')), false);
    assert.equal(isArchlabError({ code: 'ARCHLAB_INVALID_ARGUMENT', message: 'look-alike' }), false);
    assert.equal(isArchlabError(undefined), false);
  });
});
