import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, it } from "node:test";
import pino from "pino";
import { keyIdOf } from "../core/secret-box.js";
import { loadSecretKey, SECRET_KEY_FILE } from "./secret-key.js";

describe("loadSecretKey", () => {
  let dataDir: string;
  let lines: string[];
  const log = () => pino({ level: "info" }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), "hodei-secret-key-"));
    lines = [];
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it("creates <data dir>/secret.key on first start, mode 0600, and logs its path and key id but not the key", () => {
    const key = loadSecretKey({ dataDir, log: log() });
    const path = join(dataDir, SECRET_KEY_FILE);
    assert.equal(key.length, 32);
    assert.equal(readFileSync(path, "utf8"), `${key.toString("base64")}\n`);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const logged = lines.join("");
    assert.match(logged, new RegExp(keyIdOf(key)));
    assert.ok(!logged.includes(key.toString("base64")) && !logged.includes(key.toString("hex")), "the key is never logged");
  });

  it("reads the same key on every later start, never writing the file again", () => {
    const first = loadSecretKey({ dataDir, log: log() });
    const path = join(dataDir, SECRET_KEY_FILE);
    const before = statSync(path).mtimeMs;
    assert.deepEqual(loadSecretKey({ dataDir, log: log(), random: () => Buffer.alloc(32, 5) }), first);
    assert.equal(statSync(path).mtimeMs, before);
  });

  it("stops the server, naming the file, when the file does not hold a key, and leaves it alone", () => {
    const path = join(dataDir, SECRET_KEY_FILE);
    writeFileSync(path, "not a key\n", { mode: 0o600 });
    assert.throws(() => loadSecretKey({ dataDir, log: log() }), (err: Error) => err.message.startsWith("invalid configuration") && err.message.includes(path));
    assert.equal(readFileSync(path, "utf8"), "not a key\n");
  });

  it("uses HODEI_SECRET_KEY when given, and writes no file", () => {
    const given = Buffer.alloc(32, 3);
    assert.deepEqual(loadSecretKey({ dataDir, log: log(), givenKey: given }), given);
    assert.throws(() => statSync(join(dataDir, SECRET_KEY_FILE)), /ENOENT/);
  });

  it("warns when other users can read the file", () => {
    loadSecretKey({ dataDir, log: log() });
    chmodSync(join(dataDir, SECRET_KEY_FILE), 0o644);
    lines = [];
    loadSecretKey({ dataDir, log: log() });
    assert.match(lines.join(""), /can be read by other users/);
  });
});
