/**
 * Value codecs for stores that keep bytes (Redis). The store encodes the entry's envelope
 * (freshUntilMs, staleUntilMs, negative, tags) itself; a codec only turns the value into bytes.
 *
 * `jsonCodec` (the default) is JSON that also keeps:
 * - Buffers and other Uint8Arrays, as `{"$b": "<base64>"}`; they decode as Buffers;
 * - Dates, as `{"$d": "<ISO 8601>"}` (an invalid Date as `{"$d": null}`); they decode as equal Dates.
 * A plain object whose only key is `$b`, `$d` or `$o` is wrapped as `{"$o": {...}}` on encode, so
 * user data can never be mistaken for a tagged value.
 *
 * What JSON cannot keep is refused with CacheError ARCHLAB_CACHE_CODEC rather than silently changed:
 * BigInt, functions, symbols, NaN and +-Infinity, Map and Set, typed arrays other than Uint8Array,
 * and cycles. JSON's own rules are kept for `undefined`: an object property whose value is undefined
 * is dropped and an undefined array element becomes null (as JSON.stringify does; source rows never
 * hold undefined). Class instances come back as plain objects (own enumerable properties, or what
 * their toJSON returns). A top-level undefined is refused (negative entries carry no value at all).
 */
import { CacheError } from './errors.js';
import type { Codec } from './types.js';

function codecError(message: string, details: Record<string, unknown>, cause?: unknown): CacheError {
  return new CacheError('ARCHLAB_CACHE_CODEC', message, { details, cause });
}

function isTagShaped(v: object): boolean {
  // A plain object with exactly one own key among $b/$d/$o.
  let first: string | undefined;
  for (const k in v) {
    if (!Object.hasOwn(v, k)) continue;
    if (first !== undefined) return false;
    first = k;
  }
  return first === '$b' || first === '$d' || first === '$o';
}

function encodeError(message: string, path: string): CacheError {
  return codecError(`json codec: ${message} at ${path}`, { direction: 'encode', path });
}

/**
 * Turns `v` into something JSON.stringify keeps exactly, copying only the objects on the path to a
 * change (most values come back as they are). `ancestors` detects cycles.
 */
function prepare(v: unknown, path: string, ancestors: Set<object>): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return v;
    case 'number':
      if (!Number.isFinite(v)) throw encodeError(`${v} is not representable in JSON`, path);
      return v;
    case 'bigint':
      throw encodeError('BigInt is not representable in JSON', path);
    case 'function':
    case 'symbol':
      throw encodeError(`a ${typeof v} cannot be cached`, path);
  }
  if (v === null) return null;
  const obj = v as object;
  if (obj instanceof Uint8Array) return { $b: Buffer.from(obj.buffer, obj.byteOffset, obj.byteLength).toString('base64') };
  if (obj instanceof Date) return { $d: Number.isNaN(obj.getTime()) ? null : obj.toISOString() };
  if (obj instanceof Map || obj instanceof Set) {
    throw encodeError(`a ${obj instanceof Map ? 'Map' : 'Set'} would come back as {}; convert it to an array or object first`, path);
  }
  if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer) {
    throw encodeError('only Buffer/Uint8Array byte arrays are kept; convert other typed arrays first', path);
  }
  if (ancestors.has(obj)) throw encodeError('the value contains a cycle', path);
  const toJSON = (obj as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    // JSON's own rule: what toJSON returns is what is encoded.
    return prepare(toJSON.call(obj, ''), path, ancestors);
  }
  ancestors.add(obj);
  try {
    if (Array.isArray(obj)) {
      let out: unknown[] | undefined;
      for (let i = 0; i < obj.length; i++) {
        const item: unknown = obj[i];
        const p = prepare(item, `${path}[${i}]`, ancestors);
        if (p !== item) (out ??= obj.slice())[i] = p;
      }
      return out ?? obj;
    }
    let out: Record<string, unknown> | undefined;
    const rec = obj as Record<string, unknown>;
    for (const k of Object.keys(rec)) {
      const item = rec[k];
      const p = prepare(item, `${path}.${k}`, ancestors);
      if (p !== item) {
        out ??= { ...rec };
        // defineProperty: a key named "__proto__" must stay a plain own property.
        Object.defineProperty(out, k, { value: p, writable: true, enumerable: true, configurable: true });
      }
    }
    const result = out ?? rec;
    return isTagShaped(result) ? { $o: result } : result;
  } finally {
    ancestors.delete(obj);
  }
}

/** Decodes tagged values top-down (a `$o` wrapper protects its direct content from being read as a tag). */
function revive(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const r = revive(v[i]);
      if (r !== v[i]) v[i] = r;
    }
    return v;
  }
  const obj = v as Record<string, unknown>;
  if (isTagShaped(obj)) {
    if ('$b' in obj) {
      if (typeof obj.$b !== 'string') throw codecError('json codec: $b must hold a base64 string', { direction: 'decode' });
      return Buffer.from(obj.$b, 'base64');
    }
    if ('$d' in obj) {
      if (obj.$d === null) return new Date(NaN);
      const d = typeof obj.$d === 'string' ? new Date(obj.$d) : undefined;
      if (d === undefined || Number.isNaN(d.getTime())) throw codecError('json codec: $d must hold an ISO date string or null', { direction: 'decode' });
      return d;
    }
    const inner = obj.$o;
    if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) throw codecError('json codec: $o must hold an object', { direction: 'decode' });
    reviveMembers(inner as Record<string, unknown>);
    return inner;
  }
  reviveMembers(obj);
  return obj;
}

function reviveMembers(obj: Record<string, unknown>): void {
  for (const k of Object.keys(obj)) {
    const r = revive(obj[k]);
    if (r !== obj[k]) {
      // defineProperty, not assignment: a key named "__proto__" must stay a plain own property.
      Object.defineProperty(obj, k, { value: r, writable: true, enumerable: true, configurable: true });
    }
  }
}

/** `"$` as bytes: a document without it holds no tagged values and needs no revive pass. */
const TAG_MARK = Buffer.from('"$');

export const jsonCodec: Codec = {
  name: 'json',
  encode(value: unknown): string {
    if (value === undefined) throw codecError('json codec: undefined cannot be encoded (a missing value is a negative entry)', { direction: 'encode' });
    let text: string | undefined;
    try {
      text = JSON.stringify(prepare(value, '$', new Set()));
    } catch (err) {
      if (err instanceof CacheError) throw err;
      // A throwing toJSON, or nesting deeper than the stack allows (RangeError).
      throw codecError(`json codec: ${(err as Error).message}`, { direction: 'encode' }, err);
    }
    if (text === undefined) throw codecError(`json codec: a ${typeof value} cannot be encoded`, { direction: 'encode' });
    return text;
  },
  decode(data: Buffer): unknown {
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch (err) {
      throw codecError(`json codec: not JSON (${(err as Error).message})`, { direction: 'decode' }, err);
    }
    if (parsed === null || typeof parsed !== 'object' || !data.includes(TAG_MARK)) return parsed;
    try {
      return revive(parsed);
    } catch (err) {
      if (err instanceof CacheError) throw err;
      // e.g. RangeError from nesting deeper than the stack allows.
      throw codecError(`json codec: ${(err as Error).message}`, { direction: 'decode' }, err);
    }
  },
};

/**
 * Bytes as they are: encodes Buffers, Uint8Arrays and strings (as UTF-8); decodes to a Buffer.
 * Anything else is refused.
 */
export const rawCodec: Codec = {
  name: 'raw',
  encode(value: unknown): Buffer | string {
    if (typeof value === 'string' || Buffer.isBuffer(value)) return value;
    if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    throw codecError(`raw codec: only Buffer, Uint8Array and string values, got ${value === null ? 'null' : typeof value}`, { direction: 'encode' });
  },
  decode(data: Buffer): Buffer {
    return data;
  },
};

/** Strings as UTF-8, decoded back to strings (rawCodec decodes to Buffers). */
export const stringCodec: Codec = {
  name: 'string',
  encode(value: unknown): string {
    if (typeof value === 'string') return value;
    throw codecError(`string codec: only string values, got ${value === null ? 'null' : typeof value}`, { direction: 'encode' });
  },
  decode(data: Buffer): string {
    return data.toString('utf8');
  },
};

/** Runs `codec.encode`, naming the key in any failure (CacheError ARCHLAB_CACHE_CODEC). */
export function encodeValue(codec: Codec, key: string, value: unknown): Buffer | string {
  try {
    return codec.encode(value);
  } catch (err) {
    throw withKey(codec, key, 'encode', err);
  }
}

/** Runs `codec.decode`, naming the key in any failure (CacheError ARCHLAB_CACHE_CODEC). */
export function decodeValue(codec: Codec, key: string, data: Buffer): unknown {
  try {
    return codec.decode(data);
  } catch (err) {
    throw withKey(codec, key, 'decode', err);
  }
}

function withKey(codec: Codec, key: string, direction: 'encode' | 'decode', err: unknown): CacheError {
  const reason = err instanceof Error ? err.message : String(err);
  const inner = err instanceof CacheError && err.code === 'ARCHLAB_CACHE_CODEC' ? err.details : undefined;
  return codecError(`cannot ${direction} the value of key ${JSON.stringify(key.length > 64 ? key.slice(0, 64) + '...' : key)} with the ${codec.name} codec: ${reason}`, { ...inner, key, direction, codec: codec.name }, err);
}
