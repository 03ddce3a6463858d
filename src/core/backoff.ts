/**
 * The one retry policy of the control plane: what to do when an attempt is lost (worker died,
 * never registered, failed to start). A command that exits non-zero is an answer, not a loss,
 * and is never retried. Pure: the scheduler and reconciler call it and write what it says.
 */
export interface RetryDecision {
  retry: boolean;
  /** When the next attempt may be provisioned (epoch ms). */
  notBeforeMs: number;
}

export function backoffMs(attempt: number): number {
  // 1 s, 2 s, 4 s ... capped at 60 s.
  return Math.min(60_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

export function nextAfterLoss(attempt: number, maxAttempts: number, permanent: boolean, nowMs: number): RetryDecision {
  if (permanent || attempt >= maxAttempts) return { retry: false, notBeforeMs: nowMs };
  return { retry: true, notBeforeMs: nowMs + backoffMs(attempt) };
}
