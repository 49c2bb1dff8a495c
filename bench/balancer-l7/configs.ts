/**
 * Config files for the peers run as reverse proxies, each tuned the way its documentation
 * recommends for proxying to a keep-alive backend, and nothing more. Every path the process writes
 * (pid, error log, temp files) is inside the bench's temp dir; nothing is logged per request.
 */

/** One listening port in front of one set of backends. */
export interface ProxySite {
  port: number;
  backends: number[];
  /** nginx: "" (round robin), "least_conn;", "random two least_conn;". HAProxy: "roundrobin", "leastconn", "random(2)". */
  balance: string;
}

export const NGINX_BALANCE = {
  'round-robin': '',
  least_conn: 'least_conn;',
  'random two least_conn': 'random two least_conn;',
} as const;

export const HAPROXY_BALANCE = {
  roundrobin: 'roundrobin',
  leastconn: 'leastconn',
  'random(2)': 'random(2)',
} as const;

/**
 * nginx with one worker. Upstream keepalive needs HTTP/1.1 and an empty Connection header to the
 * backend (nginx docs, ngx_http_upstream_module "keepalive"). keepalive_requests is raised from
 * its default of 1000 because no other system here closes a busy connection after N requests.
 */
export function nginxConfig(dir: string, sites: ProxySite[]): string {
  const upstreams = sites
    .map(
      (s, i) => `  upstream app${i} {
    ${s.balance}
${s.backends.map((b) => `    server 127.0.0.1:${b} max_fails=0;`).join('\n')}
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${s.port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://app${i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`,
    )
    .join('\n');
  return `${nginxPreamble(dir, 'bench/balancer-l7.ts', '')}
${upstreams}
}
`;
}

/** One frontend and backend per site, the same in HAProxy's http and tcp modes. */
export function haproxySites(sites: ProxySite[]): string {
  return sites
    .map(
      (s, i) => `frontend fe${i}
  bind 127.0.0.1:${s.port}
  default_backend be${i}

backend be${i}
  balance ${s.balance}
${s.backends.map((b, j) => `  server s${j} 127.0.0.1:${b}`).join('\n')}
`,
    )
    .join('\n');
}

/**
 * HAProxy in http mode with one thread. `http-reuse always` shares idle backend connections
 * between client connections (HAProxy's recommendation for backends that keep connections alive);
 * every timeout is set, as HAProxy warns without them.
 */
export function haproxyConfig(sites: ProxySite[]): string {
  const blocks = haproxySites(sites);
  return `# Written by bench/balancer-l7.ts for one run; deleted afterwards.
global
  nbthread 1
  # Below the container's open-file limit (HAProxy wants about 2 per connection).
  maxconn 4000

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 60s

${blocks}`;
}

/**
 * The main context of an nginx config for one bench run: one worker in the foreground, pid and
 * error log inside `dir`, the events block. `user` is a `user ...;` line or empty; `modules` are
 * `load_module` lines, which must come first.
 */
export function nginxMain(dir: string, writtenBy: string, user: string, modules = ''): string {
  return `# Written by ${writtenBy} for one run; deleted afterwards.
${modules}${user}worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events {
  worker_connections 4096;
}`;
}

/**
 * The start of an nginx config for one bench run, up to and inside `http {` (the caller adds its
 * servers and the closing brace): nginxMain, then every temp path inside `dir` and no access log.
 */
export function nginxPreamble(dir: string, writtenBy: string, user: string): string {
  return `${nginxMain(dir, writtenBy, user)}
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-client-body;
  proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fastcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  scgi_temp_path ${dir}/nginx-scgi;`;
}
