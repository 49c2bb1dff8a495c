/**
 * Reads a request body of declared length whole into one buffer allocated once at that length, so
 * the proxy can send it to a backend again after a failed attempt (replay.ts says when). The
 * declared length is at most retries.maxBodyBytes, so is the buffer; a body that arrives longer or
 * shorter than declared fails the read. node:http's parser enforces Content-Length on HTTP/1.1
 * already; the check here covers HTTP/2, where a length mismatch is the stream's to detect.
 *
 * The reader ends exactly once, telling its sink: the body (`bodyRead`), or why there is none
 * (`bodyFailed`). `deadline` (performance.now() ms) is swept by the proxy's ExchangeTimeouts, which
 * calls timedOut() once it has passed.
 */
import type { Readable } from 'node:stream';

export type BodyFailure =
  /** The client went away (or its stream broke) before the whole body arrived. */
  | 'aborted'
  /** More bytes than declared (HTTP/2). */
  | 'too-long'
  /** The body ended before its declared length (HTTP/2). */
  | 'too-short'
  /** The whole body did not arrive before `deadline` (timeouts.request). */
  | 'timeout';

export interface BodySink {
  bodyRead(body: Buffer): void;
  bodyFailed(why: BodyFailure): void;
}

export class BodyReader {
  private readonly buf: Buffer;
  private at = 0;
  private done = false;
  /** Its slot in the proxy's ExchangeTimeouts while armed (-1: not armed). */
  armedAt = -1;

  constructor(
    private readonly req: Readable,
    bytes: number,
    /** performance.now() by which the whole body must have arrived. */
    public deadline: number,
    private readonly sink: BodySink,
  ) {
    // Every byte is written before the buffer is used (a short body fails), so unsafe is safe here.
    this.buf = Buffer.allocUnsafe(bytes);
    req.on('data', this.onData);
    req.on('end', this.onEnd);
    req.on('error', this.onGone);
    req.on('close', this.onGone);
  }

  /** Bytes read so far. */
  get bytesRead(): number {
    return this.at;
  }

  /** The client left (the response closed): stop, telling the sink 'aborted'. */
  abort(): void {
    this.fail('aborted');
  }

  /** Called by the proxy's timeout sweep once `deadline` has passed. */
  timedOut(): boolean {
    this.fail('timeout');
    return true;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.done) return;
    if (chunk.length > this.buf.length - this.at) return this.fail('too-long');
    chunk.copy(this.buf, this.at);
    this.at += chunk.length;
  };

  private readonly onEnd = (): void => {
    if (this.done) return;
    if (this.at !== this.buf.length) return this.fail('too-short');
    this.done = true;
    this.sink.bodyRead(this.buf);
  };

  /** 'error' or 'close' before 'end'. */
  private readonly onGone = (): void => {
    this.fail('aborted');
  };

  private fail(why: BodyFailure): void {
    if (this.done) return;
    this.done = true;
    // Nothing more is wanted from the request: let what is still coming drain instead of piling up.
    this.req.off('data', this.onData);
    this.req.resume();
    this.sink.bodyFailed(why);
  }
}
