/** archlab/balancer: an HTTP (L7) load balancer and reverse proxy, with TCP and UDP (L4) listeners. See docs/balancer.md. */
export { startBalancer, type BalancerHandle, type BalancerOptions } from './server.js';
export {
  balancerConfig,
  loadBalancerConfig,
  zBalancerConfig,
  type BalancerConfig,
  type BalancerConfigInput,
  type PoolConfig,
  type BackendConfig,
  type RouteConfig,
} from './config.js';
export { Backend, type BackendState } from './backend.js';
export { Pool } from './pool.js';
export { BalancerError, type BalancerErrorCode } from './errors.js';
export { ALGORITHM_NAMES, type AlgorithmName, type BackendView, type PickContext, type Picker, type PickerOptions } from './pick/types.js';
export { createPicker } from './pick/index.js';
/** HTTP helpers other blocks reuse (the forward proxy): hop-by-hop stripping and smuggling checks. */
export { stripHopByHop, type HeaderMap } from './l7/headers.js';
export { checkFraming, type FramingResult } from './l7/framing.js';
