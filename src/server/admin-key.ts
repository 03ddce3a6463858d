/**
 * The first admin key, so that the one-command start works with auth on: a server that finds no
 * working admin key in its database makes one and writes it to <data dir>/admin.key, where the CLI
 * on this machine reads it (cli/credentials.ts). Then `hodei server`, `hodei run -- echo hi`.
 *
 * Invariants:
 * - The key is never logged; the file's path is.
 * - The file is created with mode 0600 and never overwritten (O_EXCL): an existing file is left
 *   alone, with a warning when its key does not work. It is written before the key is stored, so a
 *   crash in between leaves a file that works nowhere (and says so at the next start), never a
 *   working admin key that nobody has.
 * - The file sits at the top of the data directory: not in work/ (local workers' directories) nor
 *   in agent-runtime/ (mounted into containers and copied into the worker image; config.ts refuses
 *   a runtime directory that would contain it).
 *
 * In a cluster the operator gives the key instead (HODEI_ADMIN_KEY_FILE, a mounted Secret): it is
 * stored as an admin key when it is not one yet, and no admin.key is written. Rotating it: put a new
 * key in the Secret, restart, then `hodei keys revoke` the old one.
 */
import { readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { hashToken, isApiKeyShaped, mintApiKey } from "../core/token.js";
import { scopesOf } from "../store/keys.js";
import type { Store } from "../store/store.js";

export const ADMIN_KEY_FILE = "admin.key";

/** Names tried for the key, in order: "admin", then "admin-2", ... (a revoked key keeps its name). */
const MAX_NAME_TRIES = 100;

export async function ensureAdminKey(deps: { store: Store; clock: Clock; log: Logger; dataDir: string; adminKeyFile?: string }): Promise<void> {
  const { store, log } = deps;
  if (deps.adminKeyFile) return adoptGivenKey(deps, deps.adminKeyFile);
  const path = join(deps.dataDir, ADMIN_KEY_FILE);
  const working = await store.keys.list(false);
  const hasAdmin = working.some((key) => scopesOf(key).includes("admin"));
  const fileState = await inspectFile(store, path);
  if (fileState === "working") {
    log.info({ path }, "admin key file found");
    warnIfReadableByOthers(path, log);
    return;
  }
  if (fileState === "refused") {
    log.warn(
      { path },
      hasAdmin
        ? "the key in the admin key file is unknown or revoked; the CLI on this machine will be refused with it: remove the file, or put a working key in it"
        : "no working admin key, and the admin key file holds a key that is unknown or revoked (left from another database?); it is not overwritten: remove it and restart to have a new admin key written",
    );
    return;
  }
  if (hasAdmin) return; // No file, and admins exist: they removed it on purpose.
  await createAdminKey(deps, path);
}

/** "absent", "working" (its key is a working key), or "refused". */
async function inspectFile(store: Store, path: string): Promise<"absent" | "working" | "refused"> {
  let content: string;
  try {
    content = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "absent";
    throw new Error(`cannot read the admin key file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return (await store.keys.findActiveByHash(hashToken(content.trim()))) ? "working" : "refused";
}

/** HODEI_ADMIN_KEY_FILE: the operator's key becomes an admin key (once); nothing is written. */
async function adoptGivenKey({ store, clock, log }: { store: Store; clock: Clock; log: Logger }, path: string): Promise<void> {
  let key: string;
  try {
    key = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new Error(`invalid configuration: HODEI_ADMIN_KEY_FILE=${path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (!isApiKeyShaped(key)) {
    throw new Error(
      `invalid configuration: HODEI_ADMIN_KEY_FILE=${path} does not hold an API key: it must be hodei_key_ and 43 base64url characters, e.g. hodei_key_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\\n')`,
    );
  }
  if (await store.keys.findActiveByHash(hashToken(key))) {
    log.info({ path }, "admin key given by HODEI_ADMIN_KEY_FILE is known");
    return;
  }
  const name = await insertAdminKey(store, key, clock.nowMs());
  log.info({ path, keyName: name }, "admin key given by HODEI_ADMIN_KEY_FILE stored; no admin key file is written");
}

/** Stores `key` as an admin key under the first free name ("admin", "admin-2", ...); returns the name. */
async function insertAdminKey(store: Store, key: string, nowMs: number): Promise<string> {
  for (let n = 1; n <= MAX_NAME_TRIES; n++) {
    const name = n === 1 ? "admin" : `admin-${n}`;
    if (await store.keys.insert({ name, keyHash: hashToken(key), scopes: ["admin"] }, nowMs)) return name;
  }
  throw new Error(`every name from admin to admin-${MAX_NAME_TRIES} is taken`);
}

async function createAdminKey({ store, clock, log }: { store: Store; clock: Clock; log: Logger }, path: string): Promise<void> {
  const key = mintApiKey();
  try {
    writeFileSync(path, `${key}\n`, { flag: "wx", mode: 0o600 });
  } catch (err) {
    // EEXIST: another server on this data directory wrote it first; it stores the key too.
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return;
    throw new Error(`cannot write the admin key to ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const name = await insertAdminKey(store, key, clock.nowMs());
    log.info({ path, keyName: name }, "admin key created and written to its file (mode 0600); the CLI on this machine uses it");
  } catch (err) {
    unlinkSync(path);
    throw new Error(`cannot store the admin key: ${(err as Error).message}`, { cause: err });
  }
}

function warnIfReadableByOthers(path: string, log: Logger): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) log.warn({ path, mode: mode.toString(8) }, "the admin key file can be read by other users: chmod 600 it");
}
