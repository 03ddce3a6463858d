/**
 * Queries on the job_logs table. Chunks are numbered 1, 2, 3, ... per attempt. The attempt's
 * worker row keeps how far the numbering has got (log_seq: 1..log_seq are all received) and how
 * many bytes are stored (log_bytes); every append checks the numbering, inserts and moves log_seq
 * in one transaction whose update is guarded by the log_seq it started from and by the worker's
 * state, so two writers can never both extend one attempt's log and an ended attempt gets nothing.
 * A writer that knows where the log stands (KnownLog: an agent's stream, from its last append)
 * skips the read of the worker row; the guarded update checks what it knew.
 * Data is bytes, stored exactly as received.
 */
import type { Kysely } from "kysely";
import type { WorkerState } from "../core/worker-state.js";
import { firstRow, runCompiled } from "./compiled.js";
import type { Database, LogRow } from "./schema.js";

export interface LogChunkInput {
  seq: number;
  stream: string;
  data: Uint8Array;
  timeMs: number;
}

/**
 * How much of an attempt's log is stored: at most limitBytes + systemAllowanceBytes, marker
 * included. An agent that keeps its output within the limit (as it is told to) and adds only its
 * short system lines never reaches that, so only an agent that ignores the limit is ever cut.
 */
export interface LogBudget {
  /** The job's log limit (HODEI_LOG_LIMIT_BYTES), per attempt. */
  limitBytes: number;
  /** Extra room for the agent's short system chunks (its own truncation marker and the like). */
  systemAllowanceBytes: number;
  /** Written once, as a "system" chunk in place of the first chunk that does not fit. */
  marker: string;
}

export type AppendOutcome =
  /**
   * logSeq: 1..logSeq are received (the acknowledgement); truncatedNow: this call wrote the marker;
   * isTruncated: the attempt's log is cut (now or before), as the worker row says after this call;
   * storedBytes: bytes this call stored (0 for resends and chunks past the limit; the marker counts);
   * logBytes: the attempt's stored bytes after this call (the worker row's log_bytes).
   */
  | { kind: "stored"; logSeq: number; truncatedNow: boolean; isTruncated: boolean; storedBytes: number; logBytes: number }
  /** The first new chunk does not follow logSeq; nothing was written. */
  | { kind: "gap"; logSeq: number; seq: number }
  /** The worker is not in one of the states allowed to log (its attempt ended); nothing was written. */
  | { kind: "ended"; state: WorkerState | "missing" };

/** Where followers resume: after this (attempt, seq). */
export interface LogPosition {
  attempt: number;
  seq: number;
}

/**
 * Where a writer believes an attempt's log stands, from its own last append (or the worker row it
 * read): given to append, it saves the read of the worker row when the chunks follow it. The
 * append's guarded update checks it; a stale one only costs that append a second try, with the read.
 */
export interface KnownLog {
  jobId: string;
  attempt: number;
  logSeq: number;
  logBytes: number;
  isTruncated: boolean;
}

/** Workers whose agent may send log chunks. */
export const AGENT_LOG_STATES: readonly WorkerState[] = ["registered", "running"];
/** Workers the control plane may still add a system line for (it is about to end their attempt). */
const SYSTEM_LOG_STATES: readonly WorkerState[] = ["waiting", "registered", "running"];
/** Attempts to extend a log whose guarded update lost a race with another writer. */
const RACE_RETRIES = 3;

class LostRace extends Error {}

export class LogQueries {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Appends chunks (in seq order) to the log of a worker's attempt. A chunk already received
   * (seq <= log_seq) is ignored; the first new one must be log_seq + 1 and the rest follow without
   * gaps. With a budget, data past the limit is not stored: the first chunk that does not fit is
   * replaced by the marker, and later ones only move log_seq (they are acknowledged, not stored).
   */
  async append(
    workerId: string,
    chunks: LogChunkInput[],
    budget: LogBudget | null,
    states: readonly WorkerState[] = AGENT_LOG_STATES,
    known?: KnownLog,
  ): Promise<AppendOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        // `known` serves the first try only, and only for chunks that continue it (resends, gaps
        // and the rest are judged on the row as read).
        const start = attempt === 1 && known && chunks[0]?.seq === known.logSeq + 1 ? known : undefined;
        return await this.db.transaction().execute((tx) => appendOnce(tx, workerId, chunks, budget, states, start));
      } catch (err) {
        if (!(err instanceof LostRace) || attempt >= RACE_RETRIES) throw err;
      }
    }
  }

  /** A line of the control plane's own ("system") after whatever the attempt has received, numbered log_seq + 1. */
  async appendSystemLine(workerId: string, text: string, timeMs: number): Promise<AppendOutcome> {
    for (let attempt = 1; ; attempt++) {
      const worker = await this.db.selectFrom("workers").select("log_seq").where("id", "=", workerId).executeTakeFirst();
      const chunk = { seq: Number(worker?.log_seq ?? 0) + 1, stream: "system", data: Buffer.from(text), timeMs };
      const outcome = await this.append(workerId, [chunk], null, SYSTEM_LOG_STATES);
      // A gap here means an agent's chunk landed between the read and the append: number after it.
      if (outcome.kind !== "gap" || attempt >= RACE_RETRIES) return outcome;
    }
  }

  /** One job's chunks after `after`, ordered by (attempt, seq), at most `limit` of them. */
  async read(jobId: string, after: LogPosition, limit: number): Promise<LogRow[]> {
    return this.db
      .selectFrom("job_logs")
      .selectAll()
      .where("job_id", "=", jobId)
      .where((eb) => eb.or([eb("attempt", ">", after.attempt), eb.and([eb("attempt", "=", after.attempt), eb("seq", ">", after.seq)])]))
      .orderBy("attempt")
      .orderBy("seq")
      .limit(limit)
      .execute();
  }
}

async function appendOnce(
  tx: Kysely<Database>,
  workerId: string,
  chunks: LogChunkInput[],
  budget: LogBudget | null,
  states: readonly WorkerState[],
  known: KnownLog | undefined,
): Promise<AppendOutcome> {
  // Known: its state is checked by the guarded update below, which fails (LostRace) if it moved.
  const worker = known
    ? { job_id: known.jobId, attempt: known.attempt, state: states[0], log_seq: known.logSeq, log_bytes: known.logBytes, log_truncated: known.isTruncated ? 1 : 0 }
    : await firstRow(tx, "logs.append:worker", [workerId], (p) =>
        tx.selectFrom("workers").select(["job_id", "attempt", "state", "log_seq", "log_bytes", "log_truncated"]).where("id", "=", p(0)),
      );
  if (!worker || !states.includes(worker.state)) return { kind: "ended", state: worker?.state ?? "missing" };
  const startSeq = Number(worker.log_seq);
  const startBytes = Number(worker.log_bytes);
  let seq = startSeq;
  let bytes = startBytes;
  let isTruncated = worker.log_truncated === 1;
  let truncatedNow = false;
  const rows: { seq: number; stream: string; data: Buffer; timeMs: number }[] = [];
  for (const chunk of chunks) {
    if (chunk.seq <= seq) continue; // received before: a resend after a reconnect
    if (chunk.seq !== seq + 1) return { kind: "gap", logSeq: seq, seq: chunk.seq };
    seq = chunk.seq;
    if (isTruncated) continue; // past the limit: acknowledged, not stored
    const data = Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.byteLength);
    if (budget && bytes + data.length > capacity(budget)) {
      const marker = Buffer.from(budget.marker);
      rows.push({ seq, stream: "system", data: marker, timeMs: chunk.timeMs });
      bytes += marker.length;
      isTruncated = truncatedNow = true;
      continue;
    }
    rows.push({ seq, stream: chunk.stream, data, timeMs: chunk.timeMs });
    bytes += data.length;
  }
  if (seq === startSeq) return { kind: "stored", logSeq: seq, truncatedNow: false, isTruncated, storedBytes: 0, logBytes: startBytes };
  if (rows.length > 0) {
    await tx
      .insertInto("job_logs")
      .values(rows.map((r) => ({ job_id: worker.job_id, attempt: worker.attempt, seq: r.seq, stream: r.stream, data: r.data, time_ms: r.timeMs })))
      .onConflict((oc) => oc.columns(["job_id", "attempt", "seq"]).doNothing())
      .execute();
  }
  const moved = await runCompiled(tx, `logs.append:move:${states.join(",")}`, [seq, bytes, isTruncated ? 1 : 0, workerId, startSeq], (p) =>
    tx
      .updateTable("workers")
      .set({ log_seq: p(0), log_bytes: p(1), log_truncated: p(2) })
      .where("id", "=", p(3))
      .where("log_seq", "=", p(4))
      .where("state", "in", states),
  );
  if (Number(moved.numAffectedRows) !== 1) throw new LostRace("another writer extended this log first");
  if (truncatedNow) {
    await tx.updateTable("jobs").set({ logs_truncated: 1 }).where("id", "=", worker.job_id).where("attempts", "=", worker.attempt).execute();
  }
  return { kind: "stored", logSeq: seq, truncatedNow, isTruncated, storedBytes: bytes - startBytes, logBytes: bytes };
}

/** Bytes an attempt may have stored before the marker; the marker always fits after them. */
function capacity(budget: LogBudget): number {
  return budget.limitBytes + budget.systemAllowanceBytes - Buffer.byteLength(budget.marker);
}
