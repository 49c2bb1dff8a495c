/** archlab/proxy: a forward proxy (absolute-form HTTP and CONNECT) with ACLs, SSRF guard and auth. See docs/proxy.md. */
export { startProxy, type ProxyHandle, type ProxyOptions } from './server.js';
export {
  proxyConfig,
  loadProxyConfig,
  zProxyConfig,
  type ProxyConfig,
  type ProxyConfigInput,
  type AclConfig,
  type AuthConfig,
  type ProxyLimitsConfig,
} from './config.js';
export { Acl, type AclOptions, type AclRule, type Denial, type DenyReason, type PortRange, type TargetKind } from './acl.js';
export { Cidr, AddressSet, specialRange, type SpecialRange } from './addresses.js';
export {
  Authenticator,
  hashPassword,
  userLine,
  parsePasswordHash,
  formatPasswordHash,
  parseUsers,
  loadUsersFile,
  parseBasic,
  DEFAULT_SCRYPT,
  type ScryptParams,
  type PasswordHash,
  type AuthResult,
  type AuthFailure,
} from './auth.js';
export { KeyedLimiter, type KeyLimitOptions, type TakeResult } from './limits.js';
export { parseAbsoluteTarget, parseConnectTarget, parseAuthority, formatTarget, type Target, type HttpTarget, type Parsed, type TargetProblem } from './target.js';
export { systemLookup, type LookupFn } from './resolve.js';
export { ProxyError, type ProxyErrorCode } from './errors.js';
export { VIA } from './forward.js';
