/**
 * The server's secret key (core/secret-box.ts seals job secrets with it): HODEI_SECRET_KEY when
 * set, else <data dir>/secret.key, created on first start.
 *
 * Invariants:
 * - the key is never logged: its file's path and its key id (a public fingerprint) are;
 * - the file is created with mode 0600 and never overwritten (O_EXCL: two servers starting on one
 *   data directory end up with the one that was written first); a file that does not hold a key
 *   stops the server naming it, rather than being replaced, which would make every stored secret
 *   unreadable;
 * - the file sits at the top of the data directory, beside admin.key: not in work/ (local workers'
 *   directories) nor in agent-runtime/ (mounted into containers; config.ts refuses a runtime
 *   directory that would contain it).
 * Local workers run as the server's user and could read it, as they could the database: the local
 * provider is for trusted jobs.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { parseSecretKey } from "../config.js";
import { keyIdOf, SECRET_KEY_BYTES } from "../core/secret-box.js";

export const SECRET_KEY_FILE = "secret.key";

export interface SecretKeyDeps {
  dataDir: string;
  /** HODEI_SECRET_KEY, decoded by config.ts; undefined: use the file. */
  givenKey?: Buffer;
  log: Logger;
  /** Where a new key's bytes come from (tests); default node:crypto. */
  random?: (size: number) => Buffer;
}

export function loadSecretKey(deps: SecretKeyDeps): Buffer {
  const { log } = deps;
  if (deps.givenKey) {
    log.info({ keyId: keyIdOf(deps.givenKey) }, "secret key given by HODEI_SECRET_KEY");
    return deps.givenKey;
  }
  const path = join(deps.dataDir, SECRET_KEY_FILE);
  const existing = readKeyFile(path);
  if (existing) {
    warnIfReadableByOthers(path, log);
    log.info({ path, keyId: keyIdOf(existing) }, "secret key file found");
    return existing;
  }
  const key = (deps.random ?? randomBytes)(SECRET_KEY_BYTES);
  try {
    writeFileSync(path, `${key.toString("base64")}\n`, { flag: "wx", mode: 0o600 });
  } catch (err) {
    // Another server on this data directory wrote it first: use that one.
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return readKeyFile(path)!;
    throw new Error(`cannot write the secret key to ${path}: ${(err as Error).message}`, { cause: err });
  }
  log.info({ path, keyId: keyIdOf(key) }, "secret key created and written to its file (mode 0600); keep it with the database");
  return key;
}

/** The key in the file, or undefined when there is no file. */
function readKeyFile(path: string): Buffer | undefined {
  let content: string;
  try {
    content = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`invalid configuration: cannot read the secret key file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseSecretKey(content);
  } catch (err) {
    throw new Error(
      `invalid configuration: the secret key file ${path} does not hold a key (${(err as Error).message}); it is never overwritten, as that would make every stored secret unreadable: restore it, or remove it if no job with secrets is waiting`,
      { cause: err },
    );
  }
}

function warnIfReadableByOthers(path: string, log: Logger): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) log.warn({ path, mode: mode.toString(8) }, "the secret key file can be read by other users: chmod 600 it");
}
