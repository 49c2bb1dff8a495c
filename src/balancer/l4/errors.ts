import { ArchlabError } from '../../core/errors.js';

/**
 * Stable codes of the L4 protocol parsers. A parser throws one of these when the bytes are
 * recognisably the protocol (a PROXY signature, a TLS handshake record) but break its rules; bytes
 * that are simply something else are reported as a result (`none`, `not-tls`), never thrown.
 */
export type L4ErrorCode =
  /** A PROXY protocol v1 line or v2 block that breaks the spec (haproxy doc/proxy-protocol.txt). */
  | 'ARCHLAB_PROXY_PROTOCOL_INVALID'
  /** A PROXY protocol v1 line over 107 bytes, or a v2 block over the configured maximum. */
  | 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE'
  /** TLS records or a ClientHello that break RFC 8446 / RFC 6066 / RFC 7301. */
  | 'ARCHLAB_TLS_HELLO_INVALID'
  /** A ClientHello not complete within the configured number of bytes. */
  | 'ARCHLAB_TLS_HELLO_TOO_LARGE';

/**
 * A peer sent bytes an L4 listener cannot accept. Never retryable: the same bytes fail again, so
 * the shell closes the connection. `details.offset` is the byte offset (from the start of the
 * buffer given to the parser) where the problem was found.
 */
export class L4ProtocolError extends ArchlabError {
  declare readonly code: L4ErrorCode;

  constructor(code: L4ErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, { retryable: false, details });
  }
}
