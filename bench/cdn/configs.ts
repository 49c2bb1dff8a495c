/**
 * Configs of the peer caches, each set up the way its documentation describes for a reverse
 * proxy cache in front of one keep-alive origin, with one worker, and nothing more. Every path a
 * process writes (pid, logs, cache files, Varnish's working dir) is inside the bench's temp dir.
 */

import { nginxPreamble } from '../balancer-l7/configs.js';

/**
 * nginx with one worker and `proxy_cache` (ngx_http_proxy_module): responses are stored in files
 * under `dir`, keyed by the default `$scheme$proxy_host$request_uri`, honouring Cache-Control;
 * upstream keepalive as in bench/balancer-l7 (HTTP/1.1, empty Connection header). X-Cache shows
 * `$upstream_cache_status` so the bench can check that the measured requests were hits. Running as
 * root, the worker would switch to `nobody` and could not write the cache dir: it stays root.
 */
export function nginxCacheConfig(dir: string, port: number, originPort: number): string {
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${nginxPreamble(dir, 'bench/cdn.ts', user)}
  proxy_cache_path ${dir}/nginx-cache levels=1:2 keys_zone=cdn:64m max_size=2g inactive=2h use_temp_path=off;
  upstream origin {
    server 127.0.0.1:${originPort} max_fails=0;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache cdn;
      proxy_cache_lock on;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`;
}

/**
 * Varnish's VCL: the built-in logic (which caches GET/HEAD by Cache-Control), one backend, and an
 * X-Cache header from `obj.hits` so the bench can check that the measured requests were hits.
 */
export function varnishVcl(originPort: number): string {
  return `# Written by bench/cdn.ts for one run; deleted afterwards.
vcl 4.1;

backend origin {
  .host = "127.0.0.1";
  .port = "${originPort}";
}

sub vcl_deliver {
  if (obj.hits > 0) {
    set resp.http.X-Cache = "HIT";
  } else {
    set resp.http.X-Cache = "MISS";
  }
}
`;
}

/**
 * varnishd arguments: in the foreground (-F, so the process group is the bench's to stop), no
 * privilege separation (-j none: the temp dir is the bench user's), no management port (-T none),
 * memory storage, and one thread pool (Varnish's closest setting to "one worker").
 */
export function varnishArgs(workDir: string, vclFile: string, port: number, storageMiB: number): string[] {
  return ['-F', '-j', 'none', '-n', workDir, '-a', `127.0.0.1:${port}`, '-f', vclFile, '-T', 'none', '-s', `malloc,${storageMiB}m`, '-p', 'thread_pools=1'];
}
