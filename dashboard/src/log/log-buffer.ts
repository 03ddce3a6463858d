/**
 * A job's log as lines, built from GetLogs entries as they arrive. Entries carry raw bytes (a chunk
 * may end mid-character or mid-line), so each (attempt, stream) has its own streaming UTF-8 decoder
 * and its own unfinished last line, shown at the end until its newline comes. Lines are kept
 * compactly (strings plus typed arrays for stream and attempt), so a million lines fit in tens of
 * MB; the raw bytes are kept too, for the download (the log exactly as the job wrote it).
 * ANSI styles carry from line to line within each (attempt, stream), as on a terminal: the style a
 * line starts with is kept (sparsely: only lines that start styled), so any line renders on its own
 * in the virtualized view without re-reading the lines before it.
 */
import { type AnsiStyle, isPlain, parseAnsi, PLAIN } from "./ansi.js";
export const STDOUT = 0;
export const STDERR = 1;
export const SYSTEM = 2;

const KIND: Record<string, number> = { stdout: STDOUT, stderr: STDERR, system: SYSTEM };

export interface LogEntryLike {
  attempt: number;
  stream: string;
  data: Uint8Array;
  cursor: bigint;
}

interface Partial {
  text: string;
  kind: number;
  attempt: number;
  key: string;
}

export class LogBuffer {
  readonly texts: string[] = [];
  kinds = new Uint8Array(4096);
  attempts = new Uint16Array(4096);
  readonly chunks: Uint8Array[] = [];
  bytes = 0;
  lastCursor = 0n;
  private lastAttempt = 0;
  private readonly partials = new Map<string, Partial>();
  private readonly decoders = new Map<string, InstanceType<typeof TextDecoder>>();
  /** The ANSI style each (attempt, stream) is in at the end of its last complete line. */
  private readonly carried = new Map<string, AnsiStyle>();
  /** The style a line starts with, for lines that start styled. */
  private readonly styles = new Map<number, AnsiStyle>();
  /** Indexes of stdout-only and stderr-only views, extended lazily. */
  private readonly views = new Map<number, { indexes: Int32Array; length: number; scanned: number }>();

  append(entry: LogEntryLike): void {
    if (entry.cursor <= this.lastCursor && this.lastCursor !== 0n) return; // a resend after a resume
    this.lastCursor = entry.cursor;
    this.chunks.push(entry.data);
    this.bytes += entry.data.length;
    const kind = KIND[entry.stream] ?? SYSTEM;
    if (entry.attempt !== this.lastAttempt) {
      if (this.lastAttempt !== 0) {
        this.flushAll();
        this.push(`── attempt ${entry.attempt} ──`, SYSTEM, entry.attempt);
      }
      this.lastAttempt = entry.attempt;
    }
    const key = `${entry.attempt}:${kind}`;
    let decoder = this.decoders.get(key);
    if (!decoder) this.decoders.set(key, (decoder = new TextDecoder("utf-8", { fatal: false })));
    const text = (this.partials.get(key)?.text ?? "") + decoder.decode(entry.data, { stream: true });
    const parts = text.split("\n");
    const rest = parts.pop()!;
    for (const line of parts) this.push(line.endsWith("\r") ? line.slice(0, -1) : line, kind, entry.attempt, key);
    if (rest) this.partials.set(key, { text: rest, kind, attempt: entry.attempt, key });
    else this.partials.delete(key);
  }

  /** The log ended: unfinished lines become lines. */
  finish(): void {
    this.flushAll();
  }

  /** Lines, unfinished ones included. */
  get length(): number {
    return this.texts.length + this.partials.size;
  }

  text(i: number): string {
    return i < this.texts.length ? this.texts[i] : [...this.partials.values()][i - this.texts.length]?.text ?? "";
  }

  /** The ANSI style line i starts with (carried from the lines before it in its stream). */
  style(i: number): AnsiStyle {
    if (i < this.texts.length) return this.styles.get(i) ?? PLAIN;
    const partial = [...this.partials.values()][i - this.texts.length];
    return (partial && this.carried.get(partial.key)) ?? PLAIN;
  }

  kind(i: number): number {
    return i < this.texts.length ? this.kinds[i] : [...this.partials.values()][i - this.texts.length]?.kind ?? SYSTEM;
  }

  /** Line indexes of one stream (stdout or stderr), complete lines only. */
  view(kind: number): { indexes: Int32Array; length: number } {
    let view = this.views.get(kind);
    if (!view) this.views.set(kind, (view = { indexes: new Int32Array(1024), length: 0, scanned: 0 }));
    for (let i = view.scanned; i < this.texts.length; i++) {
      if (this.kinds[i] !== kind) continue;
      if (view.length === view.indexes.length) view.indexes = grow(view.indexes);
      view.indexes[view.length++] = i;
    }
    view.scanned = this.texts.length;
    return view;
  }

  /** The raw bytes, in order, as the job wrote them. */
  blob(): Blob {
    return new Blob(this.chunks as unknown as ConstructorParameters<typeof Blob>[0], { type: "text/plain" });
  }

  private flushAll(): void {
    for (const [key, decoder] of this.decoders) {
      const tail = decoder.decode();
      const partial = this.partials.get(key);
      const text = (partial?.text ?? "") + tail;
      if (text) this.push(text, partial?.kind ?? Number(key.split(":")[1]), partial?.attempt ?? Number(key.split(":")[0]), key);
    }
    this.partials.clear();
    this.decoders.clear();
    this.carried.clear();
  }

  private push(text: string, kind: number, attempt: number, key = ""): void {
    const i = this.texts.length;
    const start = this.carried.get(key) ?? PLAIN;
    if (!isPlain(start)) this.styles.set(i, start);
    if (text.includes("\x1b")) {
      const { end } = parseAnsi(text, start);
      if (isPlain(end)) this.carried.delete(key);
      else this.carried.set(key, end);
    }
    if (i === this.kinds.length) {
      this.kinds = grow(this.kinds);
      this.attempts = grow(this.attempts);
    }
    this.texts.push(text);
    this.kinds[i] = kind;
    this.attempts[i] = attempt;
  }
}

function grow<T extends Uint8Array | Uint16Array | Int32Array>(array: T): T {
  const next = new (array.constructor as new (n: number) => T)(array.length * 2);
  next.set(array);
  return next;
}
