/**
 * Queries of several control planes on one database: the leader lease and the replicas' presence
 * rows. Each change of the lease is one guarded UPDATE of the row `leader` (it always exists), so
 * two replicas racing for it cannot both win: on SQLite the single writer serializes the two
 * statements; on PostgreSQL the second UPDATE waits for the first's row lock and then re-checks its
 * WHERE on the new row (READ COMMITTED), which then fails. Times are the caller's clock, epoch ms.
 */
import type { Kysely } from "kysely";
import type { Database, LeaseRow, ReplicaRow } from "./schema.js";

export class ReplicaQueries {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Acquires the lease for `holder`, or renews it if `holder` has it: one guarded statement. It
   * succeeds when the holder is already `holder` or the lease has expired at nowMs (released leases
   * have expired). A change of hands increments epoch. Null when another replica holds it.
   */
  async acquireLease(name: string, holder: string, nowMs: number, expiresAtMs: number): Promise<LeaseRow | null> {
    const row = await this.tryLease(name, holder, nowMs, expiresAtMs);
    if (row) return row;
    // Migration 0022 seeds the leader row; a lease of another name, or a row deleted by hand, is
    // made free (expired) first, by whichever replica gets there: the insert yields to the other.
    const inserted = await this.db.insertInto("leases").values({ name, holder: "", epoch: 0, expires_at_ms: 0 }).onConflict((oc) => oc.column("name").doNothing()).executeTakeFirst();
    return Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0 ? this.tryLease(name, holder, nowMs, expiresAtMs) : null;
  }

  private async tryLease(name: string, holder: string, nowMs: number, expiresAtMs: number): Promise<LeaseRow | null> {
    const row = await this.db
      .updateTable("leases")
      .set((eb) => ({
        epoch: eb.case().when("holder", "=", holder).then(eb.ref("epoch")).else(eb("epoch", "+", 1)).end(),
        holder,
        expires_at_ms: expiresAtMs,
      }))
      .where("name", "=", name)
      .where((eb) => eb.or([eb("holder", "=", holder), eb("expires_at_ms", "<=", nowMs)]))
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /** Gives the lease up (graceful shutdown), so another replica takes it at once. No-op when not held. */
  async releaseLease(name: string, holder: string): Promise<void> {
    await this.db.updateTable("leases").set({ holder: "", expires_at_ms: 0 }).where("name", "=", name).where("holder", "=", holder).execute();
  }

  async getLease(name: string): Promise<LeaseRow | undefined> {
    return this.db.selectFrom("leases").selectAll().where("name", "=", name).executeTakeFirst();
  }

  /** Records that the replica runs now (an insert the first time, then an update), with its process key when known. */
  async renewPresence(id: string, nodeId: string, nowMs: number, processKey: string | null = null): Promise<void> {
    await this.db
      .insertInto("replicas")
      .values({ id, node_id: nodeId, started_at_ms: nowMs, renewed_at_ms: nowMs, process_key: processKey })
      .onConflict((oc) => oc.column("id").doUpdateSet({ renewed_at_ms: nowMs, node_id: nodeId, process_key: processKey }))
      .execute();
  }

  /** One replica's presence row. */
  async getPresence(id: string): Promise<ReplicaRow | undefined> {
    return this.db.selectFrom("replicas").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /**
   * Takes the lease from `from`, whose process is known to be gone, before it expires: guarded by
   * holder and epoch, so it succeeds only if nobody renewed or took it meanwhile. A change of hands
   * increments epoch. Null when the guard did not hold.
   */
  async takeOverLease(name: string, from: string, epoch: number, holder: string, expiresAtMs: number): Promise<LeaseRow | null> {
    const row = await this.db
      .updateTable("leases")
      .set({ holder, epoch: epoch + 1, expires_at_ms: expiresAtMs })
      .where("name", "=", name)
      .where("holder", "=", from)
      .where("epoch", "=", epoch)
      .returningAll()
      .executeTakeFirst();
    return row ?? null;
  }

  /** A replica that stops cleanly leaves. */
  async removePresence(id: string): Promise<void> {
    await this.db.deleteFrom("replicas").where("id", "=", id).execute();
  }

  /** Every replica's presence row (a handful: one per running or recently stopped replica). */
  async listPresence(): Promise<ReplicaRow[]> {
    return this.db.selectFrom("replicas").selectAll().orderBy("node_id").orderBy("id").execute();
  }

  /** Removes presence rows not renewed since beforeMs (replicas long gone); returns how many. */
  async removeStalePresence(beforeMs: number): Promise<number> {
    const result = await this.db.deleteFrom("replicas").where("renewed_at_ms", "<", beforeMs).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
