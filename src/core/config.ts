import { readFileSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { z } from 'zod';
import { ArchlabError } from './errors.js';
import { isLoopbackHost } from './net.js';
import { zDuration, zSize } from './units.js';

/**
 * Config files: YAML or JSON, validated once by a zod schema into typed values with units in their
 * names. Every failure is a ConfigError naming the file and, for each bad field, its path
 * (`pools[0].backends[1].weight`), its line and column when known, and what was expected vs received.
 * Callers reloading a config keep the running one when this throws.
 */

export type ConfigErrorCode = 'ARCHLAB_CONFIG_INVALID' | 'ARCHLAB_CONFIG_UNREADABLE' | 'ARCHLAB_CONFIG_SYNTAX';

export interface ConfigIssue {
  /** Dotted/bracket path of the field, e.g. `pools[0].backends[1].weight`; `(root)` for the whole document. */
  path: string;
  /** What is wrong: `expected number, received string`. */
  message: string;
  /** 1-based position of the field in the file, when it could be located. */
  line?: number;
  column?: number;
}

export class ConfigError extends ArchlabError {
  /** The file (or source name) the config came from. */
  readonly file: string;
  readonly issues: ConfigIssue[];

  constructor(code: ConfigErrorCode, file: string, message: string, issues: ConfigIssue[] = [], cause?: unknown) {
    super(code, message, { cause, details: { file, issues } });
    this.file = file;
    this.issues = issues;
  }
}

/** Config files bigger than this are refused unread: a config is never this big on purpose. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export type ConfigFormat = 'yaml' | 'json';

function formatFor(name: string): ConfigFormat {
  return extname(name).toLowerCase() === '.json' ? 'json' : 'yaml';
}

/**
 * Reads, parses and validates a config file. `.json` is parsed as JSON; `.yaml`, `.yml` and
 * anything else as YAML (a superset of JSON). An empty YAML file is an empty mapping, so a schema
 * whose fields all have defaults accepts it.
 */
export function loadConfig<S extends z.ZodType>(file: string, schema: S): z.output<S> {
  let text: string;
  try {
    const st = statSync(file);
    if (st.isDirectory()) {
      throw new ConfigError('ARCHLAB_CONFIG_UNREADABLE', file, `cannot read config file ${file}: it is a directory`);
    }
    if (st.size > MAX_CONFIG_BYTES) {
      throw new ConfigError(
        'ARCHLAB_CONFIG_UNREADABLE',
        file,
        `cannot read config file ${file}: ${st.size} bytes is over the ${MAX_CONFIG_BYTES}-byte limit for a config file`,
      );
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError('ARCHLAB_CONFIG_UNREADABLE', file, `cannot read config file ${file}: ${describeFsError(err)}`, [], err);
  }
  return parseConfig(text, schema, file);
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file (ENOENT)';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`;
    case 'EISDIR':
      return 'it is a directory (EISDIR)';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

/**
 * Parses and validates config text held in memory. `sourceName` names it in errors and, by its
 * extension, picks the format unless `format` is given.
 */
export function parseConfig<S extends z.ZodType>(
  text: string,
  schema: S,
  sourceName = '<config>',
  format: ConfigFormat = formatFor(sourceName),
): z.output<S> {
  const parsed = format === 'json' ? parseJson(text, sourceName) : parseYaml(text, sourceName);
  const result = schema.safeParse(parsed.data, { reportInput: true });
  if (result.success) return result.data;

  const doc = parsed.doc ?? locatorFor(text);
  const issues = result.error.issues.flatMap((issue) => toConfigIssues(issue, schema, doc));
  issues.sort(
    (a, b) =>
      (a.line ?? Infinity) - (b.line ?? Infinity) ||
      (a.column ?? Infinity) - (b.column ?? Infinity) ||
      a.path.localeCompare(b.path),
  );
  const n = issues.length;
  const lines = issues.map((i) => {
    const where = i.line === undefined ? '' : ` (line ${i.line}, column ${i.column})`;
    return `  - ${i.path}: ${i.message}${where}`;
  });
  throw new ConfigError(
    'ARCHLAB_CONFIG_INVALID',
    sourceName,
    `invalid config in ${sourceName} (${n} problem${n === 1 ? '' : 's'}):\n${lines.join('\n')}`,
    issues,
  );
}

interface Located {
  doc: Document.Parsed;
  lines: LineCounter;
}

interface Parsed {
  data: unknown;
  /** A YAML document kept to locate bad fields; absent for JSON until needed. */
  doc?: Located;
}

function parseYaml(text: string, sourceName: string): Parsed {
  const lines = new LineCounter();
  // uniqueKeys: a key given twice is an error, not "last one wins".
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const first = doc.errors[0];
  if (first !== undefined) {
    const pos = lines.linePos(first.pos[0]);
    const msg = first.message.split('\n')[0] ?? first.message;
    throw new ConfigError(
      'ARCHLAB_CONFIG_SYNTAX',
      sourceName,
      `YAML syntax error in ${sourceName} at line ${pos.line}, column ${pos.col}: ${msg}`,
      [{ path: '(root)', message: msg, line: pos.line, column: pos.col }],
      first,
    );
  }
  // toJS bounds alias expansion (maxAliasCount, default 100), so a "billion laughs" file cannot blow up.
  let data: unknown = doc.toJS();
  if (data === null && doc.contents === null) data = {};
  return { data, doc: { doc, lines } };
}

function parseJson(text: string, sourceName: string): Parsed {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return { data: JSON.parse(body) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const { line, column } = jsonErrorPosition(body, message);
    const short = message.replace(/\s*\(line \d+ column \d+\)/, '').replace(/ in JSON at position \d+/, '');
    throw new ConfigError(
      'ARCHLAB_CONFIG_SYNTAX',
      sourceName,
      `JSON syntax error in ${sourceName} at line ${line}, column ${column}: ${short}`,
      [{ path: '(root)', message: short, line, column }],
      err,
    );
  }
}

/** V8's messages carry either "(line L column C)" (newer) or "at position P" (Node 20), or nothing at the end of input. */
function jsonErrorPosition(text: string, message: string): { line: number; column: number } {
  const lc = /\(line (\d+) column (\d+)\)/.exec(message);
  if (lc !== null) return { line: Number(lc[1]), column: Number(lc[2]) };
  const p = /at position (\d+)/.exec(message);
  const offset = p !== null ? Number(p[1]) : text.length;
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - (before.lastIndexOf('\n') + 1) + 1;
  return { line, column };
}

/** JSON is (for config purposes) YAML, so the YAML parser can locate fields in a JSON file too. */
function locatorFor(text: string): Located | undefined {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false });
  return doc.errors.length === 0 ? { doc, lines } : undefined;
}

type PathSegment = PropertyKey;

/** `['pools', 0, 'backends', 1, 'weight']` -> `pools[0].backends[1].weight`. */
export function formatConfigPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out === '' ? '(root)' : out;
}

function locate(doc: Located | undefined, path: readonly PathSegment[], atKey: boolean): { line?: number; column?: number } {
  if (doc === undefined) return {};
  // Walk down as far as the path exists; a missing field is reported at its parent.
  for (let depth = path.length; depth >= 0; depth--) {
    const prefix = path.slice(0, depth);
    let offset: number | undefined;
    if (atKey && depth === path.length && depth > 0) {
      const parent = prefix.length === 1 ? doc.doc.contents : doc.doc.getIn(prefix.slice(0, -1), true);
      if (isMap(parent)) {
        const key = prefix[prefix.length - 1];
        const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
        if (pair !== undefined && isScalar(pair.key)) offset = pair.key.range?.[0];
      }
    } else {
      const node = depth === 0 ? doc.doc.contents : doc.doc.getIn(prefix, true);
      const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
      offset = range?.[0];
    }
    if (offset !== undefined) {
      const pos = doc.lines.linePos(offset);
      return { line: pos.line, column: pos.col };
    }
  }
  return {};
}

function describeInput(input: unknown): string {
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'array';
  if (typeof input === 'object') return 'object';
  if (typeof input === 'string') return JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input);
  return String(input);
}

function toConfigIssues(issue: z.core.$ZodIssue, schema: z.ZodType, doc: Located | undefined): ConfigIssue[] {
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(schema, issue.path);
    return issue.keys.map((key) => {
      const path = [...issue.path, key];
      const hint = suggest(key, known);
      return { path: formatConfigPath(path), message: `unknown key${hint}`, ...locate(doc, path, true) };
    });
  }
  // zod says "Invalid input: expected number, received string"; the prefix adds nothing.
  let message = issue.message.replace(/^(Invalid input|Invalid option|Too big|Too small|Invalid string|Invalid value): /, '');
  const hasInput = 'input' in issue;
  if (hasInput && issue.input === undefined) {
    message = `missing (${message.replace(/, received undefined$/, '')})`;
  } else if (hasInput && !/received/.test(message) && issue.code !== 'custom') {
    message += `, received ${describeInput(issue.input)}`;
  }
  return [{ path: formatConfigPath(issue.path), message, ...locate(doc, issue.path, false) }];
}

function suggest(key: string, known: string[]): string {
  if (known.length === 0) return '';
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === lower ? 0 : editDistance(lower, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  if (best !== undefined && bestDistance <= Math.max(1, Math.floor(key.length / 3))) return ` (did you mean "${best}"?)`;
  return known.length <= 12 ? ` (known keys: ${known.join(', ')})` : '';
}

/** Optimal-string-alignment distance: edits plus adjacent swaps, the usual shape of a typo ("hots"). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Best effort: the keys the schema allows at `path`, to suggest one for a typo. */
function knownKeysAt(schema: z.ZodType, path: readonly PathSegment[]): string[] {
  let s: z.ZodType | undefined = unwrap(schema);
  for (const seg of path) {
    if (s === undefined) return [];
    if (s instanceof z.ZodObject) s = unwrap((s.shape as Record<string, z.ZodType>)[String(seg)]);
    else if (s instanceof z.ZodArray) s = unwrap(s.element as z.ZodType);
    else if (s instanceof z.ZodRecord) s = unwrap(s.valueType as z.ZodType);
    else return [];
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape as Record<string, unknown>) : [];
}

function unwrap(schema: z.ZodType | undefined): z.ZodType | undefined {
  let s = schema;
  for (let i = 0; i < 16 && s !== undefined; i++) {
    if (
      s instanceof z.ZodOptional ||
      s instanceof z.ZodNullable ||
      s instanceof z.ZodDefault ||
      s instanceof z.ZodPrefault ||
      s instanceof z.ZodReadonly ||
      s instanceof z.ZodCatch
    ) {
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) {
      s = s.in as z.ZodType;
    } else if (s instanceof z.ZodLazy) {
      s = s.unwrap() as z.ZodType;
    } else {
      return s;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// The shared vocabulary. Every server's file uses these where they apply, so `admin`, `log`,
// `timeouts` and `limits` mean the same thing everywhere. Durations and sizes are written with
// units in the file (`connect: 5s`) and come out as numbers with the unit in the key (`connectMs`).
// ---------------------------------------------------------------------------------------------

const zHost = z.string().min(1, 'expected a host name or IP address, received an empty string');
const zPort = z
  .int({ error: (iss) => `expected a port number (integer 0..65535), received ${describeInput(iss.input)}` })
  .min(0)
  .max(65535);

/** A listening address. */
export const zListener = z.strictObject({
  /** Interface to bind. Default "127.0.0.1" (loopback only); "0.0.0.0" or "::" for all. */
  host: zHost.default('127.0.0.1'),
  /** TCP port, 0..65535; 0 picks a free port (read it back from the server's address). Required. */
  port: zPort,
});
export type ListenerConfig = z.output<typeof zListener>;

/** The admin listener (/metrics, /healthz, and authenticated admin routes). */
export const zAdmin = z
  .strictObject({
    /** Interface to bind. Default "127.0.0.1". */
    host: zHost.default('127.0.0.1'),
    /** TCP port, 0..65535. Required. */
    port: zPort,
    /** Bearer token for admin routes (not /metrics or /healthz). No default: absent means no auth, loopback only. */
    token: z.string().min(1, 'must not be empty; leave token out to disable admin auth').optional(),
  })
  .superRefine((v, ctx) => {
    if (v.token === undefined && !isLoopbackHost(v.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['token'],
        input: undefined,
        message: `missing: an admin listener on a non-loopback host (${v.host}) needs a token`,
      });
    }
  });
export type AdminConfig = z.output<typeof zAdmin>;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Logging. A missing `log` block means all defaults. */
export const zLog = z
  .strictObject({
    /** Lowest level written. Default "info". */
    level: z.enum(LOG_LEVELS).default('info'),
    /** Human-readable lines instead of JSON. Default: pretty only when stdout is a terminal. */
    pretty: z.boolean().optional(),
  })
  .prefault({});
export type LogConfig = z.output<typeof zLog>;

/** Metrics. A missing `metrics` block means all defaults. */
export const zMetrics = z
  .strictObject({
    /** Also export Node process metrics (CPU, memory, event-loop lag, GC) as archlab_process_* etc. Default true. */
    defaultMetrics: z.boolean().default(true),
  })
  .prefault({});
export type MetricsConfig = z.output<typeof zMetrics>;

/**
 * Timeouts common to servers. A missing `timeouts` block means all defaults; every value must be
 * more than zero, so nothing waits forever.
 */
export const zTimeouts = z
  .strictObject({
    /** Connecting to an upstream (TCP + TLS). Default 5s. -> connectMs */
    connect: zDuration('5s', { minMs: 1 }),
    /** A client must send all request headers within this (http headersTimeout). Default 10s. -> headersMs */
    headers: zDuration('10s', { minMs: 1 }),
    /** A client must send the whole request within this (http requestTimeout). Default 30s. -> requestMs */
    request: zDuration('30s', { minMs: 1 }),
    /** Waiting for an upstream's response headers. Default 30s. -> responseMs */
    response: zDuration('30s', { minMs: 1 }),
    /** An idle keep-alive connection is closed after this (http keepAliveTimeout). Default 5s. -> keepAliveMs */
    keepAlive: zDuration('5s', { minMs: 1 }),
    /** A connection with no traffic either way is closed after this. Default 60s. -> idleMs */
    idle: zDuration('60s', { minMs: 1 }),
    /** On shutdown, in-flight work gets this long before connections are cut. Default 10s. -> drainMs */
    drain: zDuration('10s', { minMs: 1 }),
  })
  .superRefine((t, ctx) => {
    // Node refuses headersTimeout > requestTimeout; say so in config terms.
    if (t.headers > t.request) {
      ctx.addIssue({
        code: 'custom',
        path: ['headers'],
        input: t.headers,
        message: `must not exceed timeouts.request (${t.request}ms), received ${t.headers}ms`,
      });
    }
  })
  .transform((t) => ({
    connectMs: t.connect,
    headersMs: t.headers,
    requestMs: t.request,
    responseMs: t.response,
    keepAliveMs: t.keepAlive,
    idleMs: t.idle,
    drainMs: t.drain,
  }))
  .prefault({});
export type TimeoutsConfig = z.output<typeof zTimeouts>;

/** Size and count limits common to servers. A missing `limits` block means all defaults. */
export const zLimits = z
  .strictObject({
    /** Largest request body accepted; bigger gets 413. Default 1MiB. -> maxBodyBytes */
    maxBody: zSize('1MiB'),
    /** Largest total request header size (http maxHeaderSize). Default 16KiB. -> maxHeaderBytes */
    maxHeader: zSize('16KiB', { minBytes: 1024 }),
    /** Concurrent client connections; more are refused. Count, default 10000. -> maxConnections */
    maxConnections: z.int().min(1).default(10_000),
  })
  .transform((l) => ({
    maxBodyBytes: l.maxBody,
    maxHeaderBytes: l.maxHeader,
    maxConnections: l.maxConnections,
  }))
  .prefault({});
export type LimitsConfig = z.output<typeof zLimits>;
