/**
 * The agent's side of lossless log delivery. Output is bytes (not necessarily text) and is cut into
 * sequence-numbered chunks (1, 2, 3, ... per attempt) of at most chunkBytes that stay buffered
 * until the server acknowledges them, so a reconnect resends exactly what is missing. Past the log
 * limit, output is discarded and counted, and one visible marker chunk says so. When too much is
 * unacknowledged, the producer is told to pause (backpressure) so the agent's memory stays bounded
 * however much the job prints.
 *
 * With a redactor (the job's secrets), output is redacted before it becomes pending, so no chunk
 * ever holds a secret, even one split across two writes or two chunks: each stream holds back the
 * end of its output that may begin a secret (less than the longest form of a secret) until more of
 * that stream's output or end() decides. A flush does not release it; the agent's system lines are
 * redacted whole.
 */
import { type Redactor, StreamRedactor } from "./redact.js";

export interface Chunk {
  seq: number;
  stream: string;
  data: Buffer;
  timeMs: number;
}

/** A chunk as the worker protocol carries it (LogChunk: int64 fields as bigint). */
export function wireChunk(c: Chunk): { seq: bigint; stream: string; data: Uint8Array; timeMs: bigint } {
  return { seq: BigInt(c.seq), stream: c.stream, data: c.data, timeMs: BigInt(c.timeMs) };
}

export interface LogBufferOptions {
  limitBytes: number;
  /** Pending output of one stream is cut into chunks of exactly this size (the last one may be smaller). */
  chunkBytes: number;
  /** Above this many unacknowledged bytes, shouldPause() is true. */
  windowBytes: number;
  now?: () => number;
  /** Redacts the job's secrets from its output and from system lines; none: nothing is redacted. */
  redactor?: Redactor;
}

export class LogBuffer {
  private nextSeq = 1;
  private pending: { stream: string; parts: Buffer[]; bytes: number } | null = null;
  private readonly unacked: Chunk[] = [];
  private unackedBytes = 0;
  private sentBytes = 0;
  private truncated = false;
  droppedBytes = 0;
  private readonly now: () => number;
  /** Per output stream: the end of its output held back because a secret may begin there. */
  private readonly redacting = new Map<string, StreamRedactor>();

  constructor(private readonly options: LogBufferOptions) {
    this.now = options.now ?? Date.now;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  get isTruncated(): boolean {
    return this.truncated;
  }

  /** Adds output of a stream; returns true if a chunk became ready to send. */
  append(stream: string, data: Buffer): boolean {
    if (data.length === 0) return false;
    if (this.truncated) {
      this.droppedBytes += data.length;
      return false;
    }
    const released = this.redact(stream, data);
    return released.length > 0 && this.appendRedacted(stream, released);
  }

  /** Adds output that is final (redacted): to pending, up to the log limit. */
  private appendRedacted(stream: string, data: Buffer): boolean {
    const room = this.options.limitBytes - this.sentBytes - (this.pending?.bytes ?? 0);
    if (data.length > room) {
      const kept = data.subarray(0, Math.max(0, room));
      if (kept.length > 0) this.appendPending(stream, kept);
      this.droppedBytes += data.length - kept.length;
      this.flush();
      this.truncated = true;
      this.emit(
        "system",
        Buffer.from(`\n[hodei] output truncated: the log limit of ${this.options.limitBytes} bytes was reached; further output is discarded\n`),
      );
      return true;
    }
    this.appendPending(stream, data);
    return this.cutFullChunks();
  }

  /** A message from the agent itself (not the job's output); not counted against the limit. */
  system(text: string): void {
    this.flush();
    const data = Buffer.from(text);
    this.emit("system", this.options.redactor ? this.options.redactor.redact(data) : data);
  }

  /** The job's output has ended: releases what each stream held back (redacted), then flushes. */
  end(): void {
    for (const [stream, redactor] of this.redacting) {
      const rest = redactor.end();
      if (rest.length === 0) continue;
      if (this.truncated) this.droppedBytes += rest.length;
      else this.appendRedacted(stream, rest);
    }
    this.flush();
  }

  /** Cuts the pending output into chunks. */
  flush(): void {
    this.cutFullChunks();
    if (!this.pending) return;
    const { stream, parts } = this.pending;
    this.pending = null;
    const data = Buffer.concat(parts);
    this.sentBytes += data.length;
    this.emit(stream, data);
  }

  /** Chunks not yet acknowledged, oldest first (all of them are resent after a reconnect). */
  unacknowledged(): readonly Chunk[] {
    return this.unacked;
  }

  /** Chunks with seq > afterSeq (to send). */
  chunksAfter(afterSeq: number): Chunk[] {
    return this.unacked.filter((c) => c.seq > afterSeq);
  }

  /** Bytes of the chunks with seq > afterSeq (not yet sent). */
  bytesAfter(afterSeq: number): number {
    let bytes = 0;
    for (let i = this.unacked.length - 1; i >= 0 && this.unacked[i].seq > afterSeq; i--) bytes += this.unacked[i].data.length;
    return bytes;
  }

  acknowledge(seq: number): void {
    while (this.unacked.length > 0 && this.unacked[0].seq <= seq) {
      const chunk = this.unacked.shift()!;
      this.unackedBytes -= chunk.data.length;
    }
  }

  shouldPause(): boolean {
    return this.unackedBytes > this.options.windowBytes;
  }

  isFullyAcknowledged(): boolean {
    return this.pending === null && this.unacked.length === 0 && [...this.redacting.values()].every((r) => r.heldBytes === 0);
  }

  /** The redacted output of `stream` that is final now (without a redactor: `data` itself). */
  private redact(stream: string, data: Buffer): Buffer {
    const redactor = this.options.redactor;
    if (!redactor || redactor.isEmpty) return data;
    let streamRedactor = this.redacting.get(stream);
    if (!streamRedactor) {
      streamRedactor = redactor.stream();
      this.redacting.set(stream, streamRedactor);
    }
    return streamRedactor.push(data);
  }

  private appendPending(stream: string, data: Buffer): void {
    if (this.pending && this.pending.stream !== stream) this.flush();
    // Kept by reference: a stream's 'data' buffers are never reused by Node.
    if (this.pending) {
      this.pending.parts.push(data);
      this.pending.bytes += data.length;
    } else {
      this.pending = { stream, parts: [data], bytes: data.length };
    }
  }

  /** Emits every full chunkBytes of the pending output; true if any was emitted. */
  private cutFullChunks(): boolean {
    const size = this.options.chunkBytes;
    if (!this.pending || this.pending.bytes < size) return false;
    const { stream } = this.pending;
    let rest = Buffer.concat(this.pending.parts);
    while (rest.length >= size) {
      this.sentBytes += size;
      this.emit(stream, rest.subarray(0, size));
      rest = rest.subarray(size);
    }
    this.pending = rest.length > 0 ? { stream, parts: [rest], bytes: rest.length } : null;
    return true;
  }

  private emit(stream: string, data: Buffer): void {
    const chunk = { seq: this.nextSeq++, stream, data, timeMs: this.now() };
    this.unacked.push(chunk);
    this.unackedBytes += data.length;
  }
}
