/**
 * HAProxy in `mode tcp` with one thread, the L4 peer: the same global settings as the http-mode
 * config in bench/balancer-l7/configs.ts (which this bench uses for `mode http`), and HAProxy's
 * defaults otherwise: no `option splice-auto` (kernel splicing is opt-in), no logging.
 */
import { haproxySites, type ProxySite } from '../balancer-l7/configs.js';

export function haproxyTcpConfig(sites: ProxySite[]): string {
  const blocks = haproxySites(sites);
  return `# Written by bench/balancer-l4.ts for one run; deleted afterwards.
global
  nbthread 1
  # Below the container's open-file limit (HAProxy wants about 2 per connection).
  maxconn 4000

defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s

${blocks}`;
}
