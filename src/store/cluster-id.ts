/**
 * The cluster id: scopes the labels of every process, container and pod this installation creates,
 * so that it reaps its own orphans and never another installation's. It belongs to the database
 * (the record of what was created), so it is stored there (meta key `cluster_id`) on first start
 * and read back on every later one; credentials in the database URL no longer matter.
 *
 * Decided once, when the control plane starts, in this order:
 *  1. HODEI_CLUSTER_ID set and equal to the stored id, or not set: the stored id.
 *  2. HODEI_CLUSTER_ID set and different from the stored id: the variable wins and replaces the
 *     stored id (the caller logs a warning naming both). An explicit setting is obeyed rather than
 *     refused, because refusing would turn a configuration change into an outage, and it is stored
 *     so that removing the variable later does not silently switch back. Resources labelled with
 *     the old id are no longer listed, so no longer reaped, by this installation: the warning says so.
 *  3. Nothing stored yet (first start, or the first start of this release on an older database):
 *     HODEI_CLUSTER_ID when set; else, on an existing database, the id the older releases derived
 *     from the database URL (so that running workers keep matching); else a new random id.
 */
import { createHash, randomBytes } from "node:crypto";
import { resolve } from "node:path";
import type { MetaQueries } from "./meta.js";

const KEY = "cluster_id";

export type ClusterIdSource = "stored" | "override" | "legacy" | "new";

export interface ClusterIdDecision {
  id: string;
  /** stored: read back; override: HODEI_CLUSTER_ID; legacy: derived from the URL as before; new: random. */
  source: ClusterIdSource;
  /** The stored id that HODEI_CLUSTER_ID replaced, when it did. */
  replaced?: string;
}

export interface ClusterIdInputs {
  /** HODEI_CLUSTER_ID, when set. */
  override: string | undefined;
  databaseUrl: string;
  /** The database was created by this start (no older release has used it). */
  isNewDatabase: boolean;
}

/** The id older releases derived from the database URL (credentials included): `c` + 12 hex. */
export function legacyClusterId(databaseUrl: string): string {
  const canonical = databaseUrl.startsWith("sqlite:") && !databaseUrl.includes(":memory:") ? `sqlite:${resolve(databaseUrl.slice(7))}` : databaseUrl;
  return `c${createHash("sha256").update(canonical).digest("hex").slice(0, 12)}`;
}

export function newClusterId(): string {
  return `c${randomBytes(6).toString("hex")}`;
}

export async function resolveClusterId(meta: MetaQueries, inputs: ClusterIdInputs): Promise<ClusterIdDecision> {
  const stored = await meta.get(KEY);
  if (stored !== undefined) {
    if (inputs.override === undefined || inputs.override === stored) return { id: stored, source: "stored" };
    await meta.set(KEY, inputs.override);
    return { id: inputs.override, source: "override", replaced: stored };
  }
  const source: ClusterIdSource = inputs.override !== undefined ? "override" : inputs.isNewDatabase ? "new" : "legacy";
  const candidate = inputs.override ?? (inputs.isNewDatabase ? newClusterId() : legacyClusterId(inputs.databaseUrl));
  // Two control planes starting together on a new database: the first write wins, and the loser
  // decides again against what is now stored.
  const id = await meta.insertIfAbsent(KEY, candidate);
  return id === candidate ? { id, source } : resolveClusterId(meta, inputs);
}
