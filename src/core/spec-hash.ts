/**
 * The fingerprint of a job spec, stored with the job so that a reused idempotency key can tell a
 * retry of the same submit (same spec: the first job is the answer) from a different job under the
 * same key (refused). It is the SHA-256 of the validated spec as canonical JSON: object keys sorted
 * at every level, arrays in their order, the idempotency key itself left out. The validated spec is
 * hashed, not the request, so a field left to its default and the same default given explicitly
 * are the same spec; a relative delay is hashed as given (not the time it resolves to), so a retry
 * seconds later is still the same spec. Any field added to JobSpec takes part without a change here.
 * Secrets take part by name only: the hash is stored in clear, and a hash of a short secret value
 * could be reversed by trying values. The trace (the caller's traceparent) is left out as well: it
 * says where the submit came from, not what to run, and a client that retries a submit does so from
 * a new span; the retry gets the first job, in the first submit's trace.
 */
import { createHash } from "node:crypto";
import type { JobSpec } from "./job-spec.js";

export function specHash(spec: JobSpec): string {
  const { idempotencyKey: _key, secrets, trace: _trace, notify, ...rest } = spec;
  // No webhook is hashed as before webhooks existed, so a key used then still matches its spec.
  const hashed = { ...rest, secretNames: Object.keys(secrets ?? {}).sort(), notify: notify?.length ? notify : undefined };
  return createHash("sha256").update(canonicalJson(hashed)).digest("hex");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
