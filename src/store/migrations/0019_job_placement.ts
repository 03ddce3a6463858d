/**
 * Provider details per job: when the worker's image is pulled (pull_policy: always,
 * if-not-present, never) and, on Kubernetes, which nodes its pod may go to (node_selector, a JSON
 * object; tolerations, a JSON array of core/v1 tolerations). Jobs from before keep the behaviour
 * they had: an image present on the host is used, no node constraint of their own.
 */
import type { Kysely } from "kysely";

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("jobs").addColumn("pull_policy", "text", (c) => c.notNull().defaultTo("if-not-present")).execute();
  await db.schema.alterTable("jobs").addColumn("node_selector", "text", (c) => c.notNull().defaultTo("{}")).execute();
  await db.schema.alterTable("jobs").addColumn("tolerations", "text", (c) => c.notNull().defaultTo("[]")).execute();
}
