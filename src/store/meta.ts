/**
 * Queries on the meta table: facts about the installation itself, one text value per key. The
 * first write of a key wins (insertIfAbsent), so two control planes starting together on a new
 * database agree on what was stored.
 */
import type { Kysely } from "kysely";
import type { Database } from "./schema.js";

export class MetaQueries {
  constructor(private readonly db: Kysely<Database>) {}

  async get(key: string): Promise<string | undefined> {
    const row = await this.db.selectFrom("meta").select("value").where("key", "=", key).executeTakeFirst();
    return row?.value;
  }

  /** Stores `value` unless the key already has one; returns the value stored (either). */
  async insertIfAbsent(key: string, value: string): Promise<string> {
    await this.db.insertInto("meta").values({ key, value }).onConflict((oc) => oc.column("key").doNothing()).execute();
    const row = await this.db.selectFrom("meta").select("value").where("key", "=", key).executeTakeFirstOrThrow();
    return row.value;
  }

  /** Stores `value`, replacing any earlier one. */
  async set(key: string, value: string): Promise<void> {
    await this.db
      .insertInto("meta")
      .values({ key, value })
      .onConflict((oc) => oc.column("key").doUpdateSet({ value }))
      .execute();
  }
}
