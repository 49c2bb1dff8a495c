/**
 * `archlab proxy --config proxy.yaml`: the file's shape. Durations and sizes are written with units
 * (`5s`, `64MiB`) and come out as numbers with the unit in the name (`connectMs`, `maxBodyBytes`).
 * Every field's default is given next to it; docs/proxy.md has the reference.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { loadConfig, parseConfig, zAdmin, zLog, zMetrics, zTimeouts } from '../core/config.js';
import { zDuration, zSize } from '../core/units.js';
import { Cidr } from './addresses.js';
import type { PortRange } from './acl.js';

const zPort = z.int().min(1).max(65535);

/** `443`, `"443"` or `"1024-65535"` -> [lo, hi]. */
const zPortRange = z.union([zPort, z.string()]).transform((v, ctx): PortRange => {
  if (typeof v === 'number') return [v, v];
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(v);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!(lo >= 1 && hi <= 65535 && lo <= hi)) {
    ctx.addIssue({ code: 'custom', input: v, message: `expected a port 1..65535 or a range "lo-hi", received ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return [lo, hi];
});

const zCidr = z.string().refine((s) => Cidr.parse(s) !== undefined, {
  error: (iss) => `expected an IP address or a CIDR such as "10.0.0.0/8" or "fd00::/8", received ${JSON.stringify(iss.input)}`,
});

/** Host globs and domains are matched against canonical hosts: lowercase ASCII (punycode for IDN). */
const zHostGlob = z
  .string()
  .regex(/^\[?[A-Za-z0-9_.*?:-]+\]?$/, 'expected a host name glob of letters, digits, ".", "-", "_", "*" and "?" (IDN as punycode), or an IP address');
const zDomain = z
  .string()
  .regex(/^(?:\*?\.)?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?$/, 'expected a domain such as "example.com" (it also matches every name under it)');

export const zAclRule = z
  .strictObject({
    /** Glob on the target's canonical host: `*` any run of characters (dots too), `?` one. */
    host: zHostGlob.optional(),
    /** The domain and every name under it: `example.com` matches example.com and a.b.example.com. Names only, never IP literals. */
    domain: zDomain.optional(),
    /** IP address or CIDR containing the address the proxy would connect to (after DNS). */
    cidr: zCidr.optional(),
    /** Target ports, numbers or "lo-hi" ranges. */
    ports: z.array(zPortRange).min(1).optional(),
  })
  .refine((r) => r.host !== undefined || r.domain !== undefined || r.cidr !== undefined || r.ports !== undefined, {
    error: 'a rule needs at least one of host, domain, cidr, ports',
  });

export const zAcl = z
  .strictObject({
    /** Ports CONNECT may reach. Default [443]. */
    connectPorts: z.array(zPortRange).min(1).default([[443, 443]]),
    /** Ports plain HTTP may reach. Default [80, "1024-65535"]. */
    httpPorts: z.array(zPortRange).min(1).default([[80, 80], [1024, 65535]]),
    /** When not empty, a target must match one of these. Default [] (everything not denied). */
    allow: z.array(zAclRule).max(10_000).default([]),
    /** A target matching any of these is refused. Default []. */
    deny: z.array(zAclRule).max(10_000).default([]),
    ssrfGuard: z
      .strictObject({
        /** Refuse loopback, private, link-local and other special-purpose addresses, judged after DNS. Default true. */
        enabled: z.boolean().default(true),
        /** Special addresses (IPs or CIDRs) that may be reached anyway, e.g. "127.0.0.1" for a local test backend. Default []. */
        exceptions: z.array(zCidr).max(10_000).default([]),
      })
      .prefault({}),
  })
  .prefault({});

export const zProxyListener = z.strictObject({
  /** Name used in logs. Default "proxy". */
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  /** Interface to bind. Default "127.0.0.1": an open proxy on a public interface is an abuse magnet. */
  host: z.string().min(1).default('127.0.0.1'),
  /** TCP port; 0 picks one. Required (3128 is the customary proxy port). */
  port: z.int().min(0).max(65535),
});

export const zAuth = z
  .strictObject({
    /** File of `user:scrypt$N$r$p$salt$hash` lines (`archlab proxy hash-password <user>`), relative to the config file. */
    usersFile: z.string().min(1).optional(),
    /** The same lines inline (for tests and the library). */
    users: z.array(z.string().min(1)).max(100_000).optional(),
    /** Realm in Proxy-Authenticate. Default "archlab". */
    realm: z.string().regex(/^[\x20-\x7e]{1,64}$/).refine((s) => !/["\\]/.test(s), 'must not contain " or \\').default('archlab'),
    /** Verified credentials cached. Default 1000. */
    cacheSize: z.int().min(1).max(1_000_000).default(1000),
    /** How long a verified credential is trusted without scrypt. Default 60s; 0 disables caching. -> cacheTtlMs */
    cacheTtl: zDuration('60s'),
    /** scrypt checks in flight at most; more get 503. Default 64. */
    maxPending: z.int().min(1).max(10_000).default(64),
  })
  .refine((a) => a.usersFile !== undefined || a.users !== undefined, { error: 'auth needs usersFile or users' })
  .transform(({ cacheTtl, ...rest }) => ({ ...rest, cacheTtlMs: cacheTtl }));

const zKeyLimits = z
  .strictObject({
    /** Requests in flight plus open tunnels. Default none. */
    maxConnections: z.int().min(1).max(1_000_000).optional(),
    /** Requests and tunnels started per second, sustained. Default none. */
    ratePerSecond: z.number().positive().max(1_000_000).optional(),
    /** Requests allowed at once after a quiet spell. Default max(1, ratePerSecond). */
    burst: z.int().min(1).max(10_000_000).optional(),
  })
  .prefault({});

export const zProxyLimits = z
  .strictObject({
    /** Largest request body (uploads); bigger gets 413. Response bodies are streamed, never held. Default 64MiB. -> maxBodyBytes */
    maxBody: zSize('64MiB'),
    /** Largest request header block (http maxHeaderSize). Default 16KiB. -> maxHeaderBytes */
    maxHeader: zSize('16KiB', { minBytes: 1024 }),
    /** Largest response header block from a target. Default 64KiB. -> maxResponseHeaderBytes */
    maxResponseHeader: zSize('64KiB', { minBytes: 1024 }),
    /** Concurrent client connections to the proxy; more are refused. Default 10000. */
    maxConnections: z.int().min(1).max(1_000_000).default(10_000),
    /** Idle keep-alive connections kept to targets, in all. Default 256. */
    maxIdleUpstream: z.int().min(0).max(100_000).default(256),
    /** Per client address (the TCP peer, exact address). */
    perClient: zKeyLimits,
    /** Per authenticated user (only with auth). */
    perUser: zKeyLimits,
    /** Client addresses and users remembered while idle, each. Default 10000. */
    maxTracked: z.int().min(1).max(10_000_000).default(10_000),
  })
  .transform((l) => ({
    maxBodyBytes: l.maxBody,
    maxHeaderBytes: l.maxHeader,
    maxResponseHeaderBytes: l.maxResponseHeader,
    maxConnections: l.maxConnections,
    maxIdleUpstream: l.maxIdleUpstream,
    perClient: l.perClient,
    perUser: l.perUser,
    maxTracked: l.maxTracked,
  }))
  .prefault({});

export const zProxyConfig = z.strictObject({
  listeners: z.array(zProxyListener).min(1, 'at least one listener').max(64),
  acl: zAcl,
  /** Proxy-Authorization: Basic against scrypt hashes. Default none: no authentication. */
  auth: zAuth.optional(),
  admin: zAdmin.optional(),
  log: zLog,
  /** One JSON line per request and per tunnel. Default true. */
  accessLog: z.boolean().default(true),
  metrics: zMetrics,
  timeouts: zTimeouts,
  limits: zProxyLimits,
});

export type ProxyConfig = z.output<typeof zProxyConfig>;
/** What a caller passes in code: the file's shape, before defaults. */
export type ProxyConfigInput = z.input<typeof zProxyConfig>;
export type AclConfig = z.output<typeof zAcl>;
export type AuthConfig = z.output<typeof zAuth>;
export type ProxyLimitsConfig = z.output<typeof zProxyLimits>;

/** Loads and validates a config file; `auth.usersFile` is relative to the file's folder. */
export function loadProxyConfig(file: string): ProxyConfig {
  const config = loadConfig(file, zProxyConfig);
  if (config.auth?.usersFile !== undefined) config.auth.usersFile = resolve(dirname(resolve(file)), config.auth.usersFile);
  return config;
}

/** Validates an in-code config (same rules and messages as a file). */
export function proxyConfig(input: ProxyConfigInput | string, sourceName = '<proxy config>'): ProxyConfig {
  return parseConfig(typeof input === 'string' ? input : JSON.stringify(input), zProxyConfig, sourceName, typeof input === 'string' ? undefined : 'json');
}
