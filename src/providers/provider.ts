/**
 * The contract every provider implements: start / inspect / stop / list.
 * Providers are dumb: no database, no retries, no job rules. The scheduler and the reconcile pass
 * decide; a provider only does what it is told, idempotently.
 */
import type { PullPolicy, Toleration } from "../core/placement.js";
import type { ResourceType } from "../core/worker-state.js";

export type { ResourceType };

/** Everything a provider needs to start one worker. */
export interface WorkerSpec {
  workerId: string;
  /** Deterministic: `hodei-worker-<workerId>`. */
  name: string;
  jobId: string;
  attempt: number;
  /**
   * Secret. Never in anything a reader of the worker's spec can see (a process's argv or env, a
   * container's config, a pod spec): local and Docker workers get it on stdin, pods from a Secret.
   */
  otpToken: string;
  /** The address the agent uses to reach the control plane. */
  serverUrl: string;
  image: string;
  /** Seconds after which the provider may kill the worker on its own (backstop). */
  deadlineSeconds: number;
  /** CPU limit in thousandths of a core; 0 means none. */
  cpuMillis: number;
  /** Memory limit in MiB; 0 means none. */
  memoryMb: number;
  // Resources: provider details per job.
  /** When the image is pulled (docker, kubernetes). */
  pullPolicy: PullPolicy;
  /** Kubernetes: node labels the pod must match, added to the provider's own. Others refuse a non-empty one. */
  nodeSelector: Record<string, string>;
  /** Kubernetes: taints the pod tolerates, added to the provider's own. Others refuse a non-empty list. */
  tolerations: Toleration[];
  /**
   * Called once the resource exists and before its agent can run: the caller records the
   * provider_resource_id here, so it is known before the agent can register.
   */
  onCreated(resource: ProviderResource): Promise<void>;
}

export interface ProviderResource {
  /** provider_resource_id: full container id | pod name | process id. */
  resourceId: string;
  resourceType: ResourceType;
  /** From our label, so a found resource maps back to its worker row. */
  workerId: string;
  /** When the resource was created (epoch ms), for the orphan creation grace. */
  createdAtMs: number;
  /**
   * start() only: how the job's cpuMillis / memoryMb were applied, in words; said plainly when they
   * are not enforced. "" (or absent) when the job asked for none.
   */
  resourcesApplied?: string;
}

export type WorkerStatus =
  /**
   * pending with a detail: the worker cannot run yet for a reason outside it that may pass (the
   * Kubernetes scheduler cannot place the pod: its message). It then waits up to the provider's
   * pending timeout instead of its registration deadline, with the detail as the job's reason.
   */
  | { state: "pending"; detail?: string }
  | { state: "running" }
  | { state: "exited"; exitCode: number | null; reason: string; /** Retrying cannot help (bad image, bad config). */ permanent?: boolean }
  | { state: "gone" };

/**
 * Where a provider keeps a worker's OTP token outside the worker until the agent redeems it (a
 * Kubernetes Secret per pod). Found by our labels, like workers.
 */
export interface TokenSecret {
  /** The provider's name for it (the Secret's name). */
  name: string;
  /** From our label: the worker whose token it holds. */
  workerId: string;
  /** provider_resource_id of the worker it belongs to; "" when it names none. */
  resourceId: string;
  /** When it was created (epoch ms), for the orphan grace. */
  createdAtMs: number;
}

export interface ProviderHealth {
  healthy: boolean;
  detail: string;
}

/**
 * Every call may be given an AbortSignal: the control plane gives up on a call that takes too long
 * (a hung daemon or API server) and aborts it, so calls never pile up in flight. A provider passes
 * the signal to its client; an aborted call rejects.
 */
export interface WorkerProvider {
  readonly name: string;
  readonly resourceType: ResourceType;
  /**
   * Optional capability: true when its workers exist on one machine only (local processes: a pid
   * and /proc mean something on that host). Only replicas on the node that started a worker
   * inspect, stop or reap it, and capacity counts per node.
   */
  readonly isNodeBound?: boolean;
  /** Starts one worker named spec.name. Idempotent on the name. Throws PermanentError when retrying cannot help. */
  start(spec: WorkerSpec, signal?: AbortSignal): Promise<ProviderResource>;
  /** A worker that no longer exists is { state: "gone" }, not an error. */
  inspect(resourceId: string, signal?: AbortSignal): Promise<WorkerStatus>;
  /** Terminate, wait graceMs, kill, remove. Idempotent: stopping a gone worker succeeds. */
  stop(resourceId: string, graceMs: number, signal?: AbortSignal): Promise<void>;
  /** Every worker this provider created for this cluster (found by our labels). */
  list(signal?: AbortSignal): Promise<ProviderResource[]>;
  health(signal?: AbortSignal): Promise<ProviderHealth>;
  /** Optional capability: the worker's last lines of output (agent or container), for failure reasons. */
  lastOutput?(resourceId: string, signal?: AbortSignal): Promise<string>;
  /**
   * Optional capability, with deleteTokenSecret: the token secrets this provider keeps for this
   * cluster's workers (found by our labels). The reconcile pass deletes those whose token was
   * redeemed or can no longer be, and those whose worker is gone.
   */
  listTokenSecrets?(signal?: AbortSignal): Promise<TokenSecret[]>;
  /** Deletes one token secret. Idempotent: deleting a gone one succeeds. */
  deleteTokenSecret?(name: string, signal?: AbortSignal): Promise<void>;
  /** Optional capability: set by the control plane; the provider calls it when a worker changes. */
  onWorkerChange?: (resourceId: string) => void;
  /** Releases clients and watchers; does not stop workers. */
  close(): Promise<void>;
}

/** Where a provider logs what it cannot hand back (a failed step off the caller's path). */
export interface ProviderLog {
  warn(fields: object, message: string): void;
}

/** The log of a provider given none: one line on stderr, an Error written as its message. */
export function stderrLog(provider: string): ProviderLog {
  const replacer = (_key: string, value: unknown) => (value instanceof Error ? { message: value.message } : value);
  return { warn: (fields, message) => process.stderr.write(`${provider}: ${message} ${JSON.stringify(fields, replacer)}\n`) };
}
