/**
 * The worker state machine. A worker runs exactly one attempt of one job, then is destroyed.
 *
 *   provisioning ──> waiting ──> registered ──> running ──> destroying ──> destroyed
 *        │              │            │                         ^
 *        └──────────────┴────────────┴─────────────────────────┘
 *
 * provisioning: row and OTP token written; the provider is being asked to start it.
 * waiting:      the provider returned its provider_resource_id; the agent has not registered yet.
 * registered:   the agent redeemed its OTP token and holds a session.
 * running:      the job was dispatched to it.
 * destroying:   its attempt is over; the provider must stop and remove it (retried until done).
 * destroyed:    the provider confirmed it is gone.
 */
export const WORKER_STATES = ["provisioning", "waiting", "registered", "running", "destroying", "destroyed"] as const;
export type WorkerState = (typeof WORKER_STATES)[number];

/** States in which the worker is (or may be) consuming resources on its provider. */
export const LIVE_WORKER_STATES: readonly WorkerState[] = ["provisioning", "waiting", "registered", "running", "destroying"];
/** States in which the worker still works on its attempt. */
export const ACTIVE_WORKER_STATES: readonly WorkerState[] = ["provisioning", "waiting", "registered", "running"];

const TRANSITIONS: Record<WorkerState, readonly WorkerState[]> = {
  provisioning: ["waiting", "destroying"],
  waiting: ["registered", "destroying"],
  registered: ["running", "destroying"],
  running: ["destroying"],
  destroying: ["destroyed"],
  destroyed: [],
};

export function canTransitionWorker(from: WorkerState, to: WorkerState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function workerStatesLeadingTo(to: WorkerState): WorkerState[] {
  return WORKER_STATES.filter((from) => TRANSITIONS[from].includes(to));
}

/** How a provider names its workers: the type recorded beside every provider_resource_id. */
export type ResourceType = "container_id" | "pod_name" | "process_id";
