/**
 * Batched socket writes. Frames written during one turn of the event loop go out together at the
 * end of it (setImmediate): small frames are concatenated into one buffer, big ones (fetched record
 * batches, large bodies) are passed through without a copy, all inside one cork/uncork so the kernel
 * sees a single writev. A thousand pipelined acks cost one syscall, not a thousand.
 */
import type { Socket } from 'node:net';

/** Buffers up to this size are concatenated with their neighbours; bigger ones are written as they are. */
const COPY_BELOW_BYTES = 16 * 1024;

export class FrameWriter {
  private parts: Buffer[] = [];
  private queuedBytes = 0;
  private scheduled = false;
  private closed = false;
  private readonly flushBound = (): void => this.flush();

  /** `onWrite` is told how many bytes went to the socket (for metrics). */
  constructor(
    private readonly socket: Socket,
    private readonly onWrite?: (bytes: number) => void,
  ) {}

  /** Bytes waiting: queued here plus buffered in the socket (not yet taken by the kernel). */
  get pendingBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  write(frame: Buffer): void {
    if (this.closed) return;
    this.parts.push(frame);
    this.queuedBytes += frame.length;
    this.schedule();
  }

  writeAll(frames: readonly Buffer[]): void {
    if (this.closed) return;
    for (const f of frames) {
      this.parts.push(f);
      this.queuedBytes += f.length;
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushBound);
  }

  /** Writes everything queued now. */
  flush(): void {
    this.scheduled = false;
    const parts = this.parts;
    const total = this.queuedBytes;
    if (parts.length === 0) return;
    this.parts = [];
    this.queuedBytes = 0;
    if (this.closed || this.socket.destroyed) return;
    this.onWrite?.(total);
    if (parts.length === 1) {
      this.socket.write(parts[0]!);
      return;
    }
    this.socket.cork();
    let run: Buffer[] = [];
    let runBytes = 0;
    const flushRun = (): void => {
      if (run.length === 1) this.socket.write(run[0]!);
      else if (run.length > 1) this.socket.write(Buffer.concat(run, runBytes));
      run = [];
      runBytes = 0;
    };
    for (const p of parts) {
      if (p.length >= COPY_BELOW_BYTES) {
        flushRun();
        this.socket.write(p);
      } else {
        run.push(p);
        runBytes += p.length;
      }
    }
    flushRun();
    this.socket.uncork();
  }

  /** Drops whatever is queued and refuses further writes (the socket is going away). */
  close(): void {
    this.closed = true;
    this.parts = [];
    this.queuedBytes = 0;
  }
}
