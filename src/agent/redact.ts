/**
 * Redaction of a job's secrets from its output, in the agent, before any byte of it is cut into a
 * chunk and sent: the value and the forms it is commonly printed in become `***`.
 *
 * The forms of a value (its UTF-8 bytes):
 * - the value itself;
 * - base64, standard and URL-safe alphabets, with and without padding;
 * - base64 of the value inside a longer base64 stream: for each of the three alignments (the value
 *   starting at a byte offset of 0, 1 or 2 modulo 3), the characters that depend on the value's
 *   bits alone (`printf 'ab%s' "$SECRET" | base64` still shows them), in both alphabets;
 * - URL encoding: percent-encoding (encodeURIComponent's, and the stricter one that also encodes
 *   !'()*), each also with space as + (form encoding).
 * Values shorter than MIN_SECRET_BYTES are not redacted (as GitHub Actions and GitLab CI do): `***`
 * in place of every "a" or "1" would garble the log and reveal the value anyway. They are still
 * never shown by the API. Forms shorter than that are dropped too. Multi-line values are matched
 * whole, not line by line.
 *
 * Streaming (StreamRedactor): output arrives in arbitrary pieces, so a secret may be split across
 * two of them (and so across two chunks). Each push releases everything that can no longer be part
 * of a secret and holds back the end of the output from the earliest position where a form could
 * still begin: the longest end that is a proper prefix of a form, so at most (longest form - 1)
 * bytes. More output, or the end, decides about them. A match the cut runs through is sent as ***
 * at once and its rest, held, is remembered as masked. Output with no secret in sight is never held.
 *
 * Pure: no I/O, no clock.
 */
import { FormMatcher } from "./form-matcher.js";

export const MIN_SECRET_BYTES = 4;
export const MASK = Buffer.from("***");

const BASE64_URL: Record<string, string> = { "+": "-", "/": "_" };

/** Every form of `value` that reveals it (see above), unique, at least MIN_SECRET_BYTES long; none for a short value. */
export function secretForms(value: string): Buffer[] {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length < MIN_SECRET_BYTES) return [];
  const texts = new Set<string>();
  const padded = bytes.toString("base64");
  texts.add(padded);
  texts.add(padded.replace(/=+$/, ""));
  for (let shift = 0; shift < 3; shift++) texts.add(alignedBase64(bytes, shift));
  for (const text of [...texts]) texts.add(text.replace(/[+/]/g, (c) => BASE64_URL[c]));
  for (const percent of percentEncodings(value)) {
    texts.add(percent);
    texts.add(percent.replace(/%20/g, "+"));
  }
  const forms = [bytes, ...[...texts].map((text) => Buffer.from(text, "latin1"))];
  const unique = new Map(forms.filter((f) => f.length >= MIN_SECRET_BYTES).map((f) => [f.toString("latin1"), f]));
  return [...unique.values()];
}

/**
 * The base64 characters that depend only on `bytes` when they start `shift` bytes (mod 3) into a
 * longer stream: the first ceil(8 * shift / 6) characters also carry bits of the bytes before, the
 * last partial one bits of the bytes after.
 */
function alignedBase64(bytes: Buffer, shift: number): string {
  const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString("base64");
  const first = Math.ceil((8 * shift) / 6);
  const end = Math.floor((8 * (shift + bytes.length)) / 6);
  return encoded.slice(first, end);
}

/**
 * encodeURIComponent's form, and the stricter one of curl --data-urlencode, Python and Go, which
 * also encode !'()*; none for a value that cannot be encoded (a lone surrogate).
 */
function percentEncodings(value: string): string[] {
  try {
    const loose = encodeURIComponent(value);
    return [loose, loose.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)];
  } catch {
    return [];
  }
}

export class Redactor {
  private readonly matcher: FormMatcher;
  /** Length of the longest form, bytes (0: nothing to redact). */
  readonly longestFormBytes: number;

  constructor(values: Iterable<string>) {
    const forms = new Map<string, Buffer>();
    for (const value of values) for (const form of secretForms(value)) forms.set(form.toString("latin1"), form);
    this.matcher = new FormMatcher([...forms.values()]);
    this.longestFormBytes = Math.max(0, ...[...forms.values()].map((f) => f.length));
  }

  get isEmpty(): boolean {
    return this.matcher.isEmpty;
  }

  /** `data` with every form of every secret replaced by ***: for output known to be whole. */
  redact(data: Buffer): Buffer {
    return this.isEmpty ? data : mask(data, this.matcher.scan(data).ranges, data.length);
  }

  redactText(text: string): string {
    return this.isEmpty ? text : this.redact(Buffer.from(text, "utf8")).toString("utf8");
  }

  /** A redactor of one output stream, for pieces of output as they come. */
  stream(): StreamRedactor {
    return new StreamRedactor(this.matcher);
  }
}

export class StreamRedactor {
  private held: Buffer = Buffer.alloc(0);
  /** Leading held bytes known to be the rest of a match whose start was already sent as ***. */
  private carriedBytes = 0;

  constructor(private readonly matcher: FormMatcher) {}

  /** Bytes held back: they may be the start of a secret. */
  get heldBytes(): number {
    return this.held.length;
  }

  /** Takes the next piece of output; returns the redacted output that is now final (maybe empty). */
  push(data: Buffer): Buffer {
    if (this.matcher.isEmpty) return data;
    const text = this.held.length > 0 ? Buffer.concat([this.held, data]) : data;
    const scan = this.matcher.scan(text);
    const cut = text.length - scan.openEndBytes;
    if (cut === 0) {
      this.held = Buffer.from(text);
      return Buffer.alloc(0);
    }
    const ranges = this.withCarried(scan.ranges);
    // A match the cut splits: its part before the cut is sent as ***, the rest is carried as known.
    const split = ranges.find(([start, end]) => start < cut && cut < end);
    const sent = ranges.filter(([, end]) => end <= cut);
    if (split) sent.push([split[0], cut]);
    const out = this.mask(text, sent, cut);
    this.carriedBytes = split ? split[1] - cut : 0;
    this.held = Buffer.from(text.subarray(cut));
    return out;
  }

  /** The output has ended: releases what was held, redacted. */
  end(): Buffer {
    const out = this.mask(this.held, this.withCarried(this.matcher.scan(this.held).ranges), this.held.length);
    this.held = Buffer.alloc(0);
    this.carriedBytes = 0;
    return out;
  }

  /** The matches, and the carried bytes at the start of the text. */
  private withCarried(found: [number, number][]): [number, number][] {
    return this.carriedBytes > 0 ? mergeRanges([[0, this.carriedBytes], ...found]) : found;
  }

  /** Masks, without a second *** for carried bytes (the *** already sent stands for the whole match). */
  private mask(text: Buffer, ranges: [number, number][], length: number): Buffer {
    if (this.carriedBytes > 0 && ranges[0]?.[0] === 0) {
      const [first, ...rest] = ranges;
      return mask(text.subarray(first[1]), rest.map(([s, e]) => [s - first[1], e - first[1]]), length - first[1]);
    }
    return mask(text, ranges, length);
  }
}

function mergeRanges(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const range of sorted) {
    const last = merged.at(-1);
    if (last && range[0] <= last[1]) last[1] = Math.max(last[1], range[1]);
    else merged.push([range[0], range[1]]);
  }
  return merged;
}

/** data[0, length) with each range replaced by MASK (ranges sorted, disjoint, within length). */
function mask(data: Buffer, ranges: [number, number][], length: number): Buffer {
  if (ranges.length === 0) return length === data.length ? data : data.subarray(0, length);
  const parts: Buffer[] = [];
  let at = 0;
  for (const [start, end] of ranges) {
    parts.push(data.subarray(at, start), MASK);
    at = end;
  }
  parts.push(data.subarray(at, length));
  return Buffer.concat(parts);
}
