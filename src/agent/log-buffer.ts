/**
 * The agent's side of lossless log delivery. Output is cut into sequence-numbered chunks
 * (1, 2, 3, ... per attempt) that stay buffered until the server acknowledges them, so a
 * reconnect resends exactly what is missing. Past the log limit, output is discarded and counted,
 * and one visible marker chunk says so. When too much is unacknowledged, the producer is told to
 * pause (backpressure) so the agent's memory stays bounded however much the job prints.
 */
export interface Chunk {
  seq: number;
  stream: string;
  data: string;
  timeMs: number;
}

export interface LogBufferOptions {
  limitBytes: number;
  /** Pending text of one stream is cut into a chunk at this size. */
  chunkBytes: number;
  /** Above this many unacknowledged bytes, shouldPause() is true. */
  windowBytes: number;
  now?: () => number;
}

export class LogBuffer {
  private nextSeq = 1;
  private pending: { stream: string; data: string } | null = null;
  private readonly unacked: Chunk[] = [];
  private unackedBytes = 0;
  private sentBytes = 0;
  private truncated = false;
  droppedBytes = 0;
  private readonly now: () => number;

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
  append(stream: string, data: string): boolean {
    if (data.length === 0) return false;
    const size = Buffer.byteLength(data);
    if (this.truncated) {
      this.droppedBytes += size;
      return false;
    }
    const room = this.options.limitBytes - this.sentBytes - (this.pending ? Buffer.byteLength(this.pending.data) : 0);
    if (size > room) {
      const kept = utf8Prefix(data, Math.max(0, room));
      if (kept) this.appendPending(stream, kept);
      this.droppedBytes += size - Buffer.byteLength(kept);
      this.flush();
      this.truncated = true;
      this.emit(
        "system",
        `\n[hodei] output truncated: the log limit of ${this.options.limitBytes} bytes was reached; further output is discarded\n`,
      );
      return true;
    }
    this.appendPending(stream, data);
    if (this.pending && Buffer.byteLength(this.pending.data) >= this.options.chunkBytes) {
      this.flush();
      return true;
    }
    return false;
  }

  /** A message from the agent itself (not the job's output); not counted against the limit. */
  system(text: string): void {
    this.flush();
    this.emit("system", text);
  }

  /** Cuts the pending text into a chunk. */
  flush(): void {
    if (!this.pending) return;
    const { stream, data } = this.pending;
    this.pending = null;
    this.sentBytes += Buffer.byteLength(data);
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

  acknowledge(seq: number): void {
    while (this.unacked.length > 0 && this.unacked[0].seq <= seq) {
      const chunk = this.unacked.shift()!;
      this.unackedBytes -= Buffer.byteLength(chunk.data);
    }
  }

  shouldPause(): boolean {
    return this.unackedBytes > this.options.windowBytes;
  }

  isFullyAcknowledged(): boolean {
    return this.pending === null && this.unacked.length === 0;
  }

  private appendPending(stream: string, data: string): void {
    if (this.pending && this.pending.stream !== stream) this.flush();
    if (this.pending) this.pending.data += data;
    else this.pending = { stream, data };
  }

  private emit(stream: string, data: string): void {
    const chunk = { seq: this.nextSeq++, stream, data, timeMs: this.now() };
    this.unacked.push(chunk);
    this.unackedBytes += Buffer.byteLength(data);
  }
}

/** The longest prefix of text that fits in maxBytes of UTF-8, never cutting a character in two. */
function utf8Prefix(text: string, maxBytes: number): string {
  const buf = Buffer.from(text);
  if (buf.length <= maxBytes) return text;
  let end = maxBytes;
  // A continuation byte (10xxxxxx) at the cut means the character started before it: cut earlier.
  while (end > 0 && (buf[end] & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString();
}
