/**
 * The one retry policy of the control plane: what to do when an attempt is lost (worker died,
 * never registered, failed to start, taken away by its provider). A command that exits non-zero is
 * an answer, not a loss, and is never retried. Pure: the reconciler calls it and writes what it says.
 */
export interface RetryDecision {
  retry: boolean;
  /** When the next attempt may be provisioned (epoch ms). */
  notBeforeMs: number;
}

/**
 * Who lost an attempt, which decides whether it counts against the job's maxAttempts:
 * - `infrastructure`: the worker failed (start error, silent, vanished); counted, retried if allowed;
 * - `permanent`: retrying cannot help (missing image, invalid pod); the job fails at once;
 * - `disruption`: something other than the job took the worker away: its provider (unavailable at
 *   start, its daemon stopped, the worker stopped or evicted from outside) or the control plane
 *   itself (it restarted while the worker was starting). The job did not fail, so the attempt is not
 *   counted (as Kubernetes' podFailurePolicy Ignore does for disruptions), up to MAX_UNCOUNTED_ATTEMPTS.
 */
export type LossKind = "infrastructure" | "permanent" | "disruption";

/** Uncounted losses allowed per job; past this disruptions count like any other loss. */
export const MAX_UNCOUNTED_ATTEMPTS = 5;
/** Delay before retrying after a disruption: the provider needs a moment, not a backoff. */
export const PROVIDER_LOSS_DELAY_MS = 5_000;

export function backoffMs(attempt: number): number {
  // 1 s, 2 s, 4 s ... capped at 60 s.
  return Math.min(60_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

export function nextAfterLoss(attempt: number, maxAttempts: number, permanent: boolean, nowMs: number): RetryDecision {
  if (permanent || attempt >= maxAttempts) return { retry: false, notBeforeMs: nowMs };
  return { retry: true, notBeforeMs: nowMs + backoffMs(attempt) };
}

export interface LossInput {
  /** Attempts made so far, the lost one included. */
  attempts: number;
  /** Of those, attempts already not counted. */
  uncountedAttempts: number;
  maxAttempts: number;
  kind: LossKind;
  nowMs: number;
}

export interface LossDecision extends RetryDecision {
  /** The lost attempt is not counted against maxAttempts. */
  isUncounted: boolean;
}

/** What to do after a lost attempt, counting only the attempts the job is answerable for. */
export function decideAfterLoss(input: LossInput): LossDecision {
  const isUncounted = input.kind === "disruption" && input.uncountedAttempts < MAX_UNCOUNTED_ATTEMPTS;
  if (isUncounted) return { retry: true, notBeforeMs: input.nowMs + PROVIDER_LOSS_DELAY_MS, isUncounted };
  const counted = input.attempts - input.uncountedAttempts;
  return { ...nextAfterLoss(counted, input.maxAttempts, input.kind === "permanent", input.nowMs), isUncounted };
}
