/**
 * A minimal ustar writer, enough to stream a root filesystem into `docker import` without a
 * temporary file, a system `tar` or an npm dependency.
 *
 * Invariants: every entry is owned by 0:0 and dated mtimeSeconds (default 0), so the same entries
 * always give the same bytes (and the same layer digest); a file's size is taken when its entry
 * is written and the file must not change while it streams (a mismatch is an error, never a
 * corrupt archive). Entries are written in the order given: list a directory before its contents.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";

export type TarEntry =
  | { type: "dir"; path: string; mode: number }
  /** source: a host file to copy (symlinks followed), or the content itself. */
  | { type: "file"; path: string; mode: number; source: string | Buffer }
  | { type: "symlink"; path: string; target: string };

const BLOCK = 512;

/** The archive as a stream. Paths are relative to the archive root ("bin/sh", not "/bin/sh"). */
export function tarStream(entries: Iterable<TarEntry>, mtimeSeconds = 0): Readable {
  return Readable.from(tarChunks(entries, mtimeSeconds), { objectMode: false });
}

async function* tarChunks(entries: Iterable<TarEntry>, mtimeSeconds: number): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    if (entry.type === "dir") {
      yield header({ name: `${entry.path.replace(/\/$/, "")}/`, mode: entry.mode, size: 0, type: "5", mtimeSeconds });
    } else if (entry.type === "symlink") {
      yield header({ name: entry.path, mode: 0o777, size: 0, type: "2", linkName: entry.target, mtimeSeconds });
    } else if (Buffer.isBuffer(entry.source)) {
      yield header({ name: entry.path, mode: entry.mode, size: entry.source.length, type: "0", mtimeSeconds });
      yield entry.source;
      yield padding(entry.source.length);
    } else {
      const { size } = await stat(entry.source);
      yield header({ name: entry.path, mode: entry.mode, size, type: "0", mtimeSeconds });
      let written = 0;
      // end is inclusive, and caps what is read if the file grew since stat().
      if (size > 0) {
        for await (const chunk of createReadStream(entry.source, { end: size - 1 })) {
          written += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
      }
      if (written !== size) {
        throw new Error(`tar: ${entry.source} changed size while it was archived (${size} -> ${written} bytes); retry`);
      }
      yield padding(size);
    }
  }
  yield Buffer.alloc(2 * BLOCK); // end of archive
}

function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

interface Header {
  name: string;
  mode: number;
  size: number;
  /** "0" file, "2" symlink, "5" directory. */
  type: "0" | "2" | "5";
  linkName?: string;
  mtimeSeconds: number;
}

function header(h: Header): Buffer {
  const block = Buffer.alloc(BLOCK);
  const [prefix, name] = splitName(h.name);
  if (Buffer.byteLength(h.linkName ?? "") > 100) throw new Error(`tar: symlink target of ${h.name} is longer than 100 bytes`);
  block.write(name, 0, 100);
  writeOctal(block, h.mode & 0o7777, 100, 8);
  writeOctal(block, 0, 108, 8); // uid
  writeOctal(block, 0, 116, 8); // gid
  writeOctal(block, h.size, 124, 12);
  writeOctal(block, h.mtimeSeconds, 136, 12);
  block.fill(" ", 148, 156); // checksum placeholder, as the format requires
  block.write(h.type, 156, 1);
  block.write(h.linkName ?? "", 157, 100);
  block.write("ustar\u000000", 257, 8);
  block.write("root", 265, 32);
  block.write("root", 297, 32);
  block.write(prefix, 345, 155);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, 8);
  return block;
}

function writeOctal(block: Buffer, value: number, offset: number, length: number): void {
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new Error(`tar: value ${value} does not fit a ${length}-byte field`);
  block.write(`${digits.padStart(length - 1, "0")}\u0000`, offset, length);
}

/** ustar keeps names up to 100 bytes, plus a 155-byte prefix split at a "/". */
function splitName(path: string): [prefix: string, name: string] {
  if (Buffer.byteLength(path) <= 100) return ["", path];
  for (let i = path.indexOf("/"); i > 0; i = path.indexOf("/", i + 1)) {
    if (Buffer.byteLength(path.slice(0, i)) <= 155 && Buffer.byteLength(path.slice(i + 1)) <= 100) return [path.slice(0, i), path.slice(i + 1)];
  }
  throw new Error(`tar: path too long for ustar: ${path}`);
}
