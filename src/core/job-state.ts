/**
 * The job state machine. Every transition the code makes is listed here; the store's guarded
 * updates use `from` lists derived from this table, so an illegal transition cannot be written.
 *
 *   queued ──> provisioning ──> running ──> succeeded | failed | canceled | timed_out
 *     │  ^          │  │            │
 *     │  └──────────┘  │            └──> queued (worker lost, or an exit code it retries; attempts left)
 *     │  (retry)       └──> failed | canceled | timed_out
 *     └──> canceled | failed | timed_out (never started within its queue timeout)
 */
export const JOB_STATES = [
  "queued",
  "provisioning",
  "running",
  "succeeded",
  "failed",
  "canceled",
  "timed_out",
] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_JOB_STATES: readonly JobState[] = ["succeeded", "failed", "canceled", "timed_out"];
export const ACTIVE_JOB_STATES: readonly JobState[] = ["provisioning", "running"];

const TRANSITIONS: Record<JobState, readonly JobState[]> = {
  queued: ["provisioning", "canceled", "failed", "timed_out"],
  provisioning: ["running", "queued", "failed", "canceled", "timed_out"],
  running: ["succeeded", "failed", "canceled", "timed_out", "queued"],
  succeeded: [],
  failed: [],
  canceled: [],
  timed_out: [],
};

export function isJobState(value: string): value is JobState {
  return (JOB_STATES as readonly string[]).includes(value);
}

export function isTerminal(state: JobState): boolean {
  return TERMINAL_JOB_STATES.includes(state);
}

export function canTransition(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The states a job may be in for a transition to `to` to be legal: the guard of the update. */
export function jobStatesLeadingTo(to: JobState): JobState[] {
  return JOB_STATES.filter((from) => TRANSITIONS[from].includes(to));
}
