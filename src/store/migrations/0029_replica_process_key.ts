/**
 * A replica's process key (scheduler/process-key.ts: boot id, PID namespace, pid, start time), so
 * that a replica on the same machine can tell the leader's process is gone and take the lease over
 * at once. Null on rows of replicas from before it, and where /proc is not there.
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("replicas").addColumn("process_key", "text").execute();
}
