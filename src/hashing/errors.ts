import { ArchlabError } from '../core/errors.js';

/** Stable codes for every way a hasher refuses a call. None is retryable: the same call fails the same way. */
export type HashingErrorCode =
  | 'ARCHLAB_HASH_EMPTY'
  | 'ARCHLAB_HASH_BAD_WEIGHT'
  | 'ARCHLAB_HASH_DUPLICATE_NODE'
  | 'ARCHLAB_HASH_UNKNOWN_NODE'
  | 'ARCHLAB_HASH_BAD_NODE'
  | 'ARCHLAB_HASH_BAD_KEY'
  | 'ARCHLAB_HASH_BAD_ARGUMENT';

export class HashingError extends ArchlabError {
  declare readonly code: HashingErrorCode;

  constructor(code: HashingErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, { details });
  }
}
