/**
 * The one retry policy of the control plane: what to do when an attempt fails in a way that may
 * be retried (the worker died, never registered, failed to start, was taken away by its
 * provider, or the command exited with a code the job asked to retry), and which exits those are.
 * Pure: the reconciler and the worker service call it and write what it says; randomness (the
 * backoff's jitter) is passed in, so the same inputs always give the same decision.
 */
export interface RetryDecision {
  retry: boolean;
  /** When the next attempt may be provisioned (epoch ms). */
  notBeforeMs: number;
}

/**
 * Who or what ended an attempt, which decides whether it counts against the job's maxAttempts:
 * - `infrastructure`: the worker failed (start error, silent, vanished); counted, retried if allowed;
 * - `exit_code`: the command exited with a code the job's retryOnExitCodes lists; counted like an
 *   infrastructure failure (it is the job's own), retried if allowed;
 * - `permanent`: retrying cannot help (missing image, invalid pod); the job fails at once;
 * - `disruption`: something other than the job took the worker away: its provider (unavailable at
 *   start, its daemon stopped, the worker stopped or evicted from outside) or the control plane
 *   itself (it restarted while the worker was starting). The job did not fail, so the attempt is not
 *   counted (as Kubernetes' podFailurePolicy Ignore does for disruptions), up to MAX_UNCOUNTED_ATTEMPTS.
 */
export type LossKind = "infrastructure" | "exit_code" | "permanent" | "disruption";

/** A source of uniform random numbers in [0, 1): Math.random in production, a fixed one in tests. */
export type Random = () => number;

/** Uncounted losses allowed per job; past this disruptions count like any other loss. */
export const MAX_UNCOUNTED_ATTEMPTS = 5;
/** Delay before retrying after a disruption: the provider needs a moment, not a backoff. */
export const PROVIDER_LOSS_DELAY_MS = 5_000;
/** The backoff's ceiling after the first failed attempt; it doubles with each further one. */
export const BACKOFF_BASE_MS = 1_000;
/** The backoff's ceiling never grows past this. */
export const BACKOFF_CAP_MS = 60_000;

/** The longest delay after failed attempt number `attempt`: 1 s, 2 s, 4 s ... capped at 60 s. */
export function backoffCeilingMs(attempt: number): number {
  return Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
}

/**
 * The delay after failed attempt number `attempt`, with "equal jitter": half the ceiling, plus a
 * random share of the other half. Jobs that fail together (a daemon restart, a flaky dependency)
 * come back spread out instead of all at once, and none comes back sooner than half its ceiling.
 */
export function backoffMs(attempt: number, random: Random): number {
  return equalJitterMs(backoffCeilingMs(attempt), random);
}

/** A delay of half `ceilingMs` plus a random share of the other half ("equal jitter"); also the webhooks' (core/webhook.ts). */
export function equalJitterMs(ceilingMs: number, random: Random): number {
  const half = ceilingMs / 2;
  return Math.floor(half + half * unitInterval(random()));
}

/** A random draw clamped to [0, 1], so that a misbehaving source can never leave the bounds. */
function unitInterval(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}

export function nextAfterLoss(attempt: number, maxAttempts: number, permanent: boolean, nowMs: number, random: Random): RetryDecision {
  if (permanent || attempt >= maxAttempts) return { retry: false, notBeforeMs: nowMs };
  return { retry: true, notBeforeMs: nowMs + backoffMs(attempt, random) };
}

export interface LossInput {
  /** Attempts made so far, the lost one included. */
  attempts: number;
  /** Of those, attempts already not counted. */
  uncountedAttempts: number;
  maxAttempts: number;
  kind: LossKind;
  nowMs: number;
  /** The backoff's jitter. */
  random: Random;
}

export interface LossDecision extends RetryDecision {
  /** The lost attempt is not counted against maxAttempts. */
  isUncounted: boolean;
}

/** What to do after a failed attempt, counting only the attempts the job is answerable for. */
export function decideAfterLoss(input: LossInput): LossDecision {
  const isUncounted = input.kind === "disruption" && input.uncountedAttempts < MAX_UNCOUNTED_ATTEMPTS;
  if (isUncounted) return { retry: true, notBeforeMs: input.nowMs + PROVIDER_LOSS_DELAY_MS, isUncounted };
  const counted = input.attempts - input.uncountedAttempts;
  return { ...nextAfterLoss(counted, input.maxAttempts, input.kind === "permanent", input.nowMs, input.random), isUncounted };
}

/** How the agent says the command ended (the fields of its result that matter here). */
export interface CommandExit {
  exitCode: number;
  timedOut: boolean;
  canceled: boolean;
  /** The agent was stopped from outside: a disruption, decided elsewhere, never an exit-code retry. */
  interrupted: boolean;
  /** The agent could not run the command at all (no exit code). */
  error: string;
}

/**
 * Whether an exit is a retryable failure under the job's retryOnExitCodes (as validated by
 * core/job-spec.ts: "", "any", or ascending codes "3,4"): a non-zero exit code it lists, or any
 * with "any". Never a timeout, a cancel, an interrupted attempt or a command that did not run.
 */
export function isRetryableExit(exit: CommandExit, retryOnExitCodes: string): boolean {
  if (exit.timedOut || exit.canceled || exit.interrupted || exit.error !== "" || exit.exitCode < 1) return false;
  if (retryOnExitCodes === "any") return true;
  return retryOnExitCodes !== "" && retryOnExitCodes.split(",").some((code) => Number(code) === exit.exitCode);
}
