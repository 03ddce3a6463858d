/** Identifiers: every id is made by the application, so inserts are idempotent and portable. */
import { randomUUID } from "node:crypto";

export function newId(): string {
  return randomUUID();
}

/** Workers get deterministic names from their id: a repeated start finds the same resource. */
export function workerName(workerId: string): string {
  return `hodei-worker-${workerId}`;
}
