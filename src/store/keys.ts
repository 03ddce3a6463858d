/**
 * Queries on the api_keys table. Only a key's SHA-256 hash is stored. A key's name is its identity
 * and is never reused: revoking sets revoked_at (one guarded statement) and keeps the row. Reads
 * that authenticate a call go to the database every time, so a revoked key stops working at once.
 */
import type { Kysely } from "kysely";
import { isScope, type Scope } from "../core/scopes.js";
import type { ApiKeyRow, Database } from "./schema.js";

/** The scopes of a stored key. Names this release does not know (a newer one stored them) grant nothing. */
export function scopesOf(row: Pick<ApiKeyRow, "scopes">): Scope[] {
  const stored = JSON.parse(row.scopes) as unknown;
  return Array.isArray(stored) ? stored.filter((s): s is Scope => typeof s === "string" && isScope(s)) : [];
}

export interface NewApiKey {
  name: string;
  keyHash: string;
  scopes: readonly Scope[];
}

export class KeyQueries {
  constructor(private readonly db: Kysely<Database>) {}

  /** Stores a new key; null when the name is taken (by a working or a revoked key). */
  async insert(key: NewApiKey, nowMs: number): Promise<ApiKeyRow | null> {
    const row = await this.db
      .insertInto("api_keys")
      .values({ name: key.name, key_hash: key.keyHash, scopes: JSON.stringify(key.scopes), created_at: nowMs, last_used_at: null, revoked_at: null })
      .onConflict((oc) => oc.column("name").doNothing())
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /** The working (not revoked) key with this hash, if any: what authenticates a call. */
  async findActiveByHash(keyHash: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom("api_keys").selectAll().where("key_hash", "=", keyHash).where("revoked_at", "is", null).executeTakeFirst();
  }

  async get(name: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom("api_keys").selectAll().where("name", "=", name).executeTakeFirst();
  }

  /** Oldest first; revoked keys only with includeRevoked. */
  async list(includeRevoked: boolean): Promise<ApiKeyRow[]> {
    return this.db
      .selectFrom("api_keys")
      .selectAll()
      .$if(!includeRevoked, (qb) => qb.where("revoked_at", "is", null))
      .orderBy("created_at")
      .orderBy("name")
      .execute();
  }

  /** Revokes a working key; null when there is no such working key (unknown, or already revoked). */
  async revoke(name: string, nowMs: number): Promise<ApiKeyRow | null> {
    const row = await this.db
      .updateTable("api_keys")
      .set({ revoked_at: nowMs })
      .where("name", "=", name)
      .where("revoked_at", "is", null)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /**
   * Records a use of the key at nowMs, unless the use recorded is later than `staleAtMs`: a write
   * at most once per interval per key, not one per call. False when nothing was written.
   */
  async touch(name: string, nowMs: number, staleAtMs: number): Promise<boolean> {
    const result = await this.db
      .updateTable("api_keys")
      .set({ last_used_at: nowMs })
      .where("name", "=", name)
      .where((eb) => eb.or([eb("last_used_at", "is", null), eb("last_used_at", "<=", staleAtMs)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }
}
