/**
 * W3C trace context for jobs, pure: parsing a caller's `traceparent`, the ids of a job's spans, and
 * the `TRACEPARENT` its command gets. No SDK here (scheduler/job-trace.ts records the spans).
 *
 * A job's trace is decided at submit and stored on its row (migration 0024):
 * - `trace_parent`: the caller's traceparent, normalised ("" when none was given);
 * - `trace_id`: set only when the control plane records the job's spans (tracing export on at
 *   submit): the caller's trace id, or a new random one. "" otherwise.
 * Span ids are derived from the job id (and the attempt and phase), never stored: any replica, after
 * any restart, emits a job's phase spans under the same job span, and the run span's id is known
 * at dispatch, before the span itself is emitted at the attempt's end.
 */
import { createHash, randomBytes } from "node:crypto";
import { InvalidInputError } from "./errors.js";

export interface TraceParent {
  /** 32 lowercase hex, not all zero. */
  traceId: string;
  /** 16 lowercase hex, not all zero. */
  spanId: string;
  /** The trace flags byte; bit 0 is "sampled". */
  flags: number;
}

/** Longest traceparent accepted: version 00 is 55 characters; later versions may append fields. */
export const MAX_TRACEPARENT_CHARS = 256;

const HEX = /^[0-9a-f]+$/;
const ZERO = /^0+$/;

/**
 * A traceparent as W3C Trace Context level 1 defines it, strictly (lowercase hex, no zero ids,
 * version ff refused, version 00 exactly 55 characters; a later version's extra fields are
 * ignored). Throws InvalidInputError naming `field`.
 */
export function parseTraceparent(text: string, field = "traceparent"): TraceParent {
  const fail = (what: string) =>
    new InvalidInputError(`${field}: ${what}; expected a W3C traceparent "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>" in lowercase`, field);
  if (text.length > MAX_TRACEPARENT_CHARS) throw fail(`${text.length} characters, at most ${MAX_TRACEPARENT_CHARS}`);
  const version = text.slice(0, 2);
  if (!HEX.test(version) || version.length !== 2) throw fail("the version is not 2 hex digits");
  if (version === "ff") throw fail("version ff is invalid");
  if (version === "00" ? text.length !== 55 : text.length < 55 || (text.length > 55 && text[55] !== "-")) throw fail("wrong length");
  const [, traceId, spanId, flags] = text.slice(0, 55).split("-");
  if (text[2] !== "-" || text[35] !== "-" || text[52] !== "-") throw fail("the fields are not separated by -");
  if (traceId?.length !== 32 || !HEX.test(traceId)) throw fail("the trace id is not 32 lowercase hex digits");
  if (ZERO.test(traceId)) throw fail("the trace id is all zeros");
  if (spanId?.length !== 16 || !HEX.test(spanId)) throw fail("the parent span id is not 16 lowercase hex digits");
  if (ZERO.test(spanId)) throw fail("the parent span id is all zeros");
  if (flags?.length !== 2 || !HEX.test(flags)) throw fail("the flags are not 2 lowercase hex digits");
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

/** A traceparent of version 00. */
export function formatTraceparent(tp: TraceParent): string {
  return `00-${tp.traceId}-${tp.spanId}-${tp.flags.toString(16).padStart(2, "0")}`;
}

/** True when the flags say the trace is sampled (recorded). */
export function isSampled(flags: number): boolean {
  return (flags & 1) === 1;
}

/** A new random trace id. */
export function newTraceId(): string {
  for (;;) {
    const id = randomBytes(16).toString("hex");
    if (!ZERO.test(id)) return id;
  }
}

/** The trace columns of a new job: see the module comment. `isRecording`: this control plane records spans. */
export function traceOfNewJob(caller: TraceParent | null, isRecording: boolean): { traceId: string; traceParent: string } {
  const traceParent = caller ? formatTraceparent(caller) : "";
  if (!isRecording) return { traceId: "", traceParent };
  return { traceId: caller?.traceId ?? newTraceId(), traceParent };
}

/** The phases of one attempt, each a span under the job's span. */
export type JobPhase = "queued" | "provision" | "register" | "run" | "destroy";

function derivedSpanId(text: string): string {
  const hex = createHash("sha256").update(text).digest("hex");
  // A zero id is invalid; 64 zero bits from SHA-256 does not happen, but the rule costs nothing.
  return ZERO.test(hex.slice(0, 16)) ? "0000000000000001" : hex.slice(0, 16);
}

/** The id of the job's own span (from submit to its final state). */
export function jobSpanId(jobId: string): string {
  return derivedSpanId(`hodei-job:${jobId}`);
}

/** The id of one phase span of one attempt. */
export function phaseSpanId(jobId: string, attempt: number, phase: JobPhase): string {
  return derivedSpanId(`hodei-job:${jobId}:${attempt}:${phase}`);
}

/** What a job row says about its trace. */
export interface JobTraceColumns {
  id: string;
  trace_id: string;
  trace_parent: string;
}

/** The flags of the job's spans: the caller's (its sampling decision), else sampled. */
export function jobTraceFlags(job: JobTraceColumns): number {
  return job.trace_parent ? parseTraceparent(job.trace_parent).flags : 1;
}

/** The trace id to show for the job ("" when none): its own, else the caller's. */
export function shownTraceId(job: JobTraceColumns): string {
  if (job.trace_id) return job.trace_id;
  return job.trace_parent ? parseTraceparent(job.trace_parent).traceId : "";
}

/**
 * The TRACEPARENT the attempt's command gets, or "" for none: the attempt's run span when the job's
 * spans are recorded (trace_id set), else the caller's traceparent as given (tracing export off:
 * the command's spans still join the caller's trace, as children of the caller's span).
 */
export function commandTraceparent(job: JobTraceColumns, attempt: number): string {
  if (job.trace_id) return formatTraceparent({ traceId: job.trace_id, spanId: phaseSpanId(job.id, attempt, "run"), flags: jobTraceFlags(job) });
  return job.trace_parent;
}
