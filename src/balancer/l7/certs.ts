import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';
import { BalancerError } from '../errors.js';

export interface CertificateFiles {
  cert: string;
  key: string;
  serverNames: string[];
}

interface Entry {
  names: string[];
  context: tls.SecureContext;
}

/**
 * Certificates for a TLS listener, chosen by SNI: an exact name first, then a wildcard
 * ("*.example.com" covers one label), else the first certificate. `load()` re-reads the files; a
 * file that fails to load leaves the certificates in use untouched.
 */
export class CertificateStore {
  private entries: Entry[] = [];
  private pems: { cert: Buffer; key: Buffer } | undefined;

  constructor(private files: CertificateFiles[]) {
    this.load();
  }

  /** Reads every file; throws ARCHLAB_BALANCER_CONFIG and keeps the old set when one is bad. */
  load(files: CertificateFiles[] = this.files): void {
    const next: Entry[] = [];
    let first: { cert: Buffer; key: Buffer } | undefined;
    for (const f of files) {
      let cert: Buffer;
      let key: Buffer;
      try {
        cert = readFileSync(f.cert);
        key = readFileSync(f.key);
        next.push({ names: f.serverNames.map((n) => n.toLowerCase()), context: tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' }) });
      } catch (err) {
        throw new BalancerError('ARCHLAB_BALANCER_CONFIG', `cannot load certificate ${f.cert} / key ${f.key}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      first ??= { cert, key };
    }
    this.entries = next;
    this.pems = first;
    this.files = files;
  }

  /** The default certificate and key (the first), for the server's own options. */
  get defaultPems(): { cert: Buffer; key: Buffer } {
    return this.pems!;
  }

  contextFor(servername: string): tls.SecureContext | undefined {
    const name = servername.toLowerCase();
    for (const e of this.entries) if (e.names.includes(name)) return e.context;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wildcard = `*${name.slice(dot)}`;
      for (const e of this.entries) if (e.names.includes(wildcard)) return e.context;
    }
    return this.entries[0]?.context;
  }

  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    cb(null, this.contextFor(servername));
  };
}
