/**
 * KubernetesProvider: one pod per attempt, through the official client (@kubernetes/client-node 1.4).
 * provider_resource_id is the pod name, hodei-worker-<uuid> (resource_type pod_name).
 *
 * Pods carry our labels and run with restartPolicy Never (a retry is a new pod with a new OTP
 * token, decided by the control plane), activeDeadlineSeconds as a backstop, and no service account
 * token unless one is configured. A watch on our pods (with the reconcile pass's polling as the
 * fallback) reports changes at once, and inspect() classifies the failures users hit: image pull
 * errors, configuration errors, OOMKilled, eviction, deadlines, and a container that exits before
 * its agent registered. Each is "exited" with its reason, so the attempt fails in seconds, not at a
 * generic timeout; image and configuration errors and OOMKilled are permanent (no retry). An
 * unschedulable pod is "pending" with the scheduler's message: the cluster may make room, and the
 * reconcile pass waits up to the provider's pending timeout (HODEI_K8S_PENDING_TIMEOUT).
 *
 * Per job: the image pull policy (imagePullPolicy) of the job's own image, and a node selector and
 * tolerations added to the provider's own (a job may not give a provider-wide node label another
 * value: refused, permanent). Pods that run the default image get the provider's pull policy
 * (default IfNotPresent: a node that has the image, loaded into kind, k3d or minikube, uses it).
 *
 * The cluster id goes into every label: the constructor refuses one that is not a label value, so a
 * bad id is one error at start rather than a 422 on every pod.
 *
 * The OTP token is not in the pod spec: each pod reads it from a Secret of its own, created right
 * before the pod and then made owned by it (kubernetes-token-secret.ts says why in that order).
 */
import * as k8s from "@kubernetes/client-node";
import { InvalidInputError, PermanentError } from "../core/errors.js";
import { labelValueProblem } from "../core/label-value.js";
import { DEFAULT_PULL_POLICY, mergeNodeSelectors, mergeTolerations, type PullPolicy, type Toleration } from "../core/placement.js";
import { AGENT_COMMAND } from "./agent-runtime.js";
import { codeOf, messageOf, withSignal, wrap } from "./kubernetes-api.js";
import { isWaitingForTokenSecret, tokenEnvVar, tokenSecretName, TokenSecrets } from "./kubernetes-token-secret.js";
import { PodWatch } from "./kubernetes-watch.js";
import { type ProviderHealth, type ProviderLog, type ProviderResource, stderrLog, type TokenSecret, type WorkerProvider, type WorkerSpec, type WorkerStatus } from "./provider.js";

export const POD_LABELS = {
  managedBy: "app.kubernetes.io/managed-by",
  clusterId: "hodei.io/cluster-id",
  jobId: "hodei.io/job-id",
  attempt: "hodei.io/attempt",
  workerId: "hodei.io/worker-id",
} as const;

export interface KubernetesProviderOptions {
  clusterId: string;
  kubeConfig: k8s.KubeConfig;
  namespace: string;
  /** Image of jobs that name none; it must hold the agent at /opt/hodei (the hodei-worker image). */
  defaultImage: string;
  /** imagePullPolicy of pods that run defaultImage; default if-not-present. A job's own image follows the job's policy. */
  defaultImagePullPolicy?: PullPolicy;
  serviceAccount?: string;
  imagePullSecrets: string[];
  /** Every pod's; a job may add keys (core/placement.ts mergeNodeSelectors). */
  nodeSelector: Record<string, string>;
  /** Every pod's; a job's are added. */
  tolerations: Toleration[];
  /** Extra environment for the agent (timeouts and the like). */
  agentEnv: Record<string, string>;
  /** Where failures the start survives are reported (a token Secret left without its owner). Default: stderr. */
  log?: ProviderLog;
  /** How often a stopping pod is read again at most, ms; its watch event wakes the wait sooner. Default 250. */
  stopPollMs?: number;
}

/** Waiting reasons after which the pod will never run as it is. */
const PERMANENT_WAITING = new Set(["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError"]);
const WORK_DIR = "/tmp/hodei-work";
/**
 * The least grace a stop gives a pod, seconds. With 0 the API server removes the pod object at once
 * while its container may still run on the node (it is killed later); with 1 or more the object
 * goes only once the kubelet has stopped the container, so "404" really means destroyed.
 */
const MIN_STOP_GRACE_SECONDS = 1;
/** How long a failed start waits for the delete of the Secret it made. */
const CLEANUP_CALL_MS = 10_000;

/** A stopping pod is read again this often at most while waiting for it to go (its watch event wakes the wait sooner), ms. */
const DEFAULT_STOP_POLL_MS = 250;

export class KubernetesProvider implements WorkerProvider {
  readonly name = "kubernetes";
  readonly resourceType = "pod_name" as const;
  private readonly core: k8s.CoreV1Api;
  private readonly secrets: TokenSecrets;
  private readonly log: ProviderLog;
  /** One watch on our pods, resumed from its last resourceVersion whenever the server ends it. */
  readonly watch: PodWatch;
  /** Called when a pod of ours changes, so the reconcile pass can look at once. */
  onWorkerChange: (resourceId: string) => void = () => {};

  /** Throws InvalidInputError when the cluster id cannot be a label value. */
  constructor(private readonly options: KubernetesProviderOptions) {
    const problem = labelValueProblem(options.clusterId);
    if (problem !== null || options.clusterId === "") {
      throw new InvalidInputError(
        `kubernetes: the cluster id "${options.clusterId}" goes into the ${POD_LABELS.clusterId} label of every pod, and the API server would refuse it: ${problem ?? "it must not be empty"}. Set HODEI_CLUSTER_ID to 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
      );
    }
    this.core = options.kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.log = options.log ?? stderrLog("kubernetes");
    this.secrets = new TokenSecrets(this.core, options.namespace, POD_LABELS.workerId);
    this.watch = new PodWatch({
      kubeConfig: options.kubeConfig,
      namespace: options.namespace,
      labelSelector: this.selector,
      onChange: (name) => {
        this.podChanged.get(name)?.();
        this.onWorkerChange(name);
      },
    });
  }

  /** stop() calls waiting for a pod to go, by pod name: the watch wakes them (a hint; they poll too). */
  private readonly podChanged = new Map<string, () => void>();

  /**
   * A wait that ends after ms, or sooner when the watch reports a change of the pod. Registered at
   * once, before the caller reads the pod, so that an event between the read and the wait is not
   * missed; `end` drops it (the caller is done).
   */
  private podChangeOrTimeout(name: string, ms: number): { changed: Promise<void>; end: () => void } {
    let end = () => {};
    const changed = new Promise<void>((resolve) => {
      end = () => {
        clearTimeout(timer);
        if (this.podChanged.get(name) === end) this.podChanged.delete(name);
        resolve();
      };
      const timer = setTimeout(end, ms);
      this.podChanged.set(name, end);
    });
    return { changed, end };
  }

  private get selector(): string {
    return `${POD_LABELS.managedBy}=hodei,${POD_LABELS.clusterId}=${this.options.clusterId}`;
  }

  async start(spec: WorkerSpec, signal?: AbortSignal): Promise<ProviderResource> {
    const body = this.podFor(spec);
    const labels = this.labelsFor(spec);
    // The Secret first, so the kubelet finds it whenever it gets to the pod (kubernetes-token-secret.ts).
    await this.secrets.create(spec.name, spec.workerId, spec.otpToken, labels, signal);
    let pod: k8s.V1Pod;
    try {
      pod = await this.createPod(spec, body, signal);
    } catch (err) {
      await this.deleteUnusedSecret(spec);
      throw err;
    }
    try {
      await this.secrets.own(pod, signal);
    } catch (err) {
      // The pod can start: its Secret goes once the agent registered, or by the reconcile pass's backstop.
      this.log.warn({ err, workerId: spec.workerId, secret: tokenSecretName(spec.name) }, "the token Secret could not be given its pod as owner; the reconcile pass deletes it");
    }
    const resource: ProviderResource = {
      resourceId: pod.metadata?.name ?? spec.name,
      resourceType: "pod_name",
      workerId: spec.workerId,
      createdAtMs: Date.parse(String(pod.metadata?.creationTimestamp ?? "")) || Date.now(),
      resourcesApplied: describeLimits(body.spec?.containers[0].resources?.limits),
    };
    await spec.onCreated(resource);
    this.watch.ensure();
    return resource;
  }

  /** Creates the pod; one of this worker that already exists (an earlier try of the same start) is taken. */
  private async createPod(spec: WorkerSpec, body: k8s.V1Pod, signal?: AbortSignal): Promise<k8s.V1Pod> {
    const { namespace } = this.options;
    try {
      return await this.core.createNamespacedPod({ namespace, body }, withSignal(signal));
    } catch (err) {
      if (codeOf(err) === 409) {
        const pod = await this.core.readNamespacedPod({ name: spec.name, namespace }, withSignal(signal));
        if (pod.metadata?.labels?.[POD_LABELS.workerId] !== spec.workerId) throw new Error(`kubernetes: pod ${spec.name} exists and is not this worker's`);
        return pod;
      }
      if (codeOf(err) === 422 || codeOf(err) === 400 || codeOf(err) === 403) throw new PermanentError(`kubernetes: the pod was refused: ${messageOf(err)}`);
      throw wrap(`create pod ${spec.name}`, err);
    }
  }

  /**
   * A start whose pod create failed deletes the Secret it made, with a signal of its own (the
   * start's may be why it failed). A delete that fails too is left to the reconcile pass.
   */
  private async deleteUnusedSecret(spec: WorkerSpec): Promise<void> {
    const name = tokenSecretName(spec.name);
    try {
      await this.secrets.delete(name, AbortSignal.timeout(CLEANUP_CALL_MS));
    } catch (err) {
      this.log.warn({ err, workerId: spec.workerId, secret: name }, "the token Secret of a pod that could not be created was not deleted; the reconcile pass deletes it");
    }
  }

  async inspect(resourceId: string, signal?: AbortSignal): Promise<WorkerStatus> {
    let pod: k8s.V1Pod;
    try {
      pod = await this.core.readNamespacedPod({ name: resourceId, namespace: this.options.namespace }, withSignal(signal));
    } catch (err) {
      if (codeOf(err) === 404) return { state: "gone" };
      throw wrap(`read pod ${resourceId}`, err);
    }
    if (isWaitingForTokenSecret(pod)) {
      // The kubelet got to the pod before its Secret existed and retries; a Secret that is gone will not come back.
      const name = tokenSecretName(resourceId);
      if (await this.secrets.exists(name, signal)) return { state: "pending" };
      return { state: "exited", exitCode: null, reason: `could not start: its OTP token Secret ${name} is missing` };
    }
    return classifyPod(pod);
  }

  async stop(resourceId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    const { namespace } = this.options;
    try {
      const gracePeriodSeconds = Math.max(MIN_STOP_GRACE_SECONDS, Math.ceil(graceMs / 1000));
      await this.core.deleteNamespacedPod({ name: resourceId, namespace, gracePeriodSeconds }, withSignal(signal));
    } catch (err) {
      if (codeOf(err) !== 404) throw wrap(`delete pod ${resourceId}`, err);
    }
    // Destroyed means gone: wait for the pod to disappear (the kubelet stops it first). The pod watch
    // (running since the pod's start) wakes the wait at its DELETED event; reading the pod stays the truth.
    this.watch.ensure();
    const deadline = Date.now() + Math.max(graceMs, MIN_STOP_GRACE_SECONDS * 1000) + 30_000;
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      const wait = this.podChangeOrTimeout(resourceId, this.options.stopPollMs ?? DEFAULT_STOP_POLL_MS);
      try {
        await this.core.readNamespacedPod({ name: resourceId, namespace }, withSignal(signal));
      } catch (err) {
        wait.end();
        if (codeOf(err) === 404) return;
        throw wrap(`read pod ${resourceId}`, err);
      }
      await wait.changed;
    }
    throw new Error(`kubernetes: pod ${resourceId} still exists ${Math.round((graceMs + 30_000) / 1000)}s after its deletion`);
  }

  async list(signal?: AbortSignal): Promise<ProviderResource[]> {
    let pods: k8s.V1PodList;
    try {
      pods = await this.core.listNamespacedPod({ namespace: this.options.namespace, labelSelector: this.selector }, withSignal(signal));
    } catch (err) {
      throw wrap("list pods", err);
    }
    return pods.items.map((pod) => ({
      resourceId: pod.metadata?.name ?? "",
      resourceType: "pod_name" as const,
      workerId: pod.metadata?.labels?.[POD_LABELS.workerId] ?? "",
      createdAtMs: Date.parse(String(pod.metadata?.creationTimestamp ?? "")) || 0,
    }));
  }

  listTokenSecrets(signal?: AbortSignal): Promise<TokenSecret[]> {
    return this.secrets.list(this.selector, signal);
  }

  deleteTokenSecret(name: string, signal?: AbortSignal): Promise<void> {
    return this.secrets.delete(name, signal);
  }

  /** The pod's last log lines, or its events when it never ran (image pull, scheduling). */
  async lastOutput(resourceId: string, signal?: AbortSignal): Promise<string> {
    const { namespace } = this.options;
    try {
      const log = await this.core.readNamespacedPodLog({ name: resourceId, namespace, tailLines: 20 }, withSignal(signal));
      if (typeof log === "string" && log.trim()) return log.trimEnd();
    } catch {
      // Not started: fall back to its events.
    }
    try {
      const events = await this.core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${resourceId}` }, withSignal(signal));
      return events.items
        .slice(-10)
        .map((e) => `${e.reason}: ${e.message}`)
        .join("\n");
    } catch {
      return "";
    }
  }

  async health(signal?: AbortSignal): Promise<ProviderHealth> {
    const { namespace } = this.options;
    try {
      await this.core.readNamespace({ name: namespace }, withSignal(signal));
      return { healthy: true, detail: `cluster ${this.options.kubeConfig.getCurrentCluster()?.server ?? "?"}, namespace ${namespace}, image ${this.options.defaultImage}` };
    } catch (err) {
      return { healthy: false, detail: `Kubernetes API not usable for namespace ${namespace}: ${messageOf(err)}` };
    }
  }

  async close(): Promise<void> {
    this.watch.close();
  }

  /** The labels of everything we create for a worker: its pod and its token Secret. */
  private labelsFor(spec: WorkerSpec): Record<string, string> {
    return {
      [POD_LABELS.managedBy]: "hodei",
      [POD_LABELS.clusterId]: this.options.clusterId,
      [POD_LABELS.jobId]: spec.jobId,
      [POD_LABELS.attempt]: String(spec.attempt),
      [POD_LABELS.workerId]: spec.workerId,
    };
  }

  private podFor(spec: WorkerSpec): k8s.V1Pod {
    const o = this.options;
    const env: Record<string, string> = {
      ...o.agentEnv,
      HODEI_MANAGED_BY: "hodei",
      HODEI_PROVIDER: "kubernetes",
      HODEI_CLUSTER_ID: o.clusterId,
      HODEI_SERVER_URL: spec.serverUrl,
      HODEI_WORKER_ID: spec.workerId,
      HODEI_WORKER_NAME: spec.name,
      HODEI_JOB_ID: spec.jobId,
      HODEI_ATTEMPT: String(spec.attempt),
      HODEI_WORK_DIR: WORK_DIR,
    };
    const limits: Record<string, string> = {};
    if (spec.cpuMillis > 0) limits.cpu = `${spec.cpuMillis}m`;
    if (spec.memoryMb > 0) limits.memory = `${spec.memoryMb}Mi`;
    // The job may add node labels to the provider's, never change one: such a pod could never be scheduled.
    const nodeSelector = mergeNodeSelectors(o.nodeSelector, spec.nodeSelector);
    if (typeof nodeSelector === "string") throw new PermanentError(`kubernetes: ${nodeSelector}`);
    const tolerations = mergeTolerations(o.tolerations, spec.tolerations).map(toV1Toleration);
    return {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: spec.name,
        labels: this.labelsFor(spec),
      },
      spec: {
        restartPolicy: "Never",
        activeDeadlineSeconds: Math.max(1, spec.deadlineSeconds),
        automountServiceAccountToken: o.serviceAccount ? undefined : false,
        serviceAccountName: o.serviceAccount,
        imagePullSecrets: o.imagePullSecrets.length > 0 ? o.imagePullSecrets.map((name) => ({ name })) : undefined,
        nodeSelector: Object.keys(nodeSelector).length > 0 ? nodeSelector : undefined,
        tolerations: tolerations.length > 0 ? tolerations : undefined,
        containers: [
          {
            name: "agent",
            image: spec.image || o.defaultImage,
            // The job's policy is about the job's own image; the default image follows the provider's.
            imagePullPolicy: PULL_POLICY[spec.image ? spec.pullPolicy : (o.defaultImagePullPolicy ?? DEFAULT_PULL_POLICY)],
            command: [...AGENT_COMMAND],
            env: [...Object.entries(env).map(([name, value]) => ({ name, value })), tokenEnvVar(spec.name)],
            resources: Object.keys(limits).length > 0 ? { requests: { ...limits }, limits } : undefined,
          },
        ],
      },
    };
  }
}

/** Maps a pod's status to the provider's view, with the reason a user can act on. */
export function classifyPod(pod: k8s.V1Pod): WorkerStatus {
  const status = pod.status ?? {};
  const container = status.containerStatuses?.[0];
  const waiting = container?.state?.waiting;
  const terminated = container?.state?.terminated;
  if (status.reason === "Evicted") return { state: "exited", exitCode: null, reason: `was evicted: ${status.message ?? ""}`.trim() };
  if (status.reason === "DeadlineExceeded") return { state: "exited", exitCode: null, reason: "ran past its activeDeadlineSeconds (DeadlineExceeded)" };
  if (status.phase === "Pending") {
    if (waiting?.reason && PERMANENT_WAITING.has(waiting.reason)) {
      return { state: "exited", exitCode: null, reason: `could not start: ${waiting.reason}: ${waiting.message ?? ""}`.trim(), permanent: true };
    }
    // The cluster may make room (a node added, labelled, untainted, or freed): wait, with the
    // scheduler's message, until it does or the provider's pending timeout passes.
    const unschedulable = status.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable");
    if (unschedulable) return { state: "pending", detail: `the scheduler cannot place the pod: ${unschedulable.message ?? "Unschedulable"}` };
    return { state: "pending" };
  }
  if (status.phase === "Running") return { state: "running" };
  if (status.phase === "Succeeded" || status.phase === "Failed") {
    // The same job in the same memory would be killed again: no retry.
    if (terminated?.reason === "OOMKilled") {
      return { state: "exited", exitCode: terminated.exitCode ?? null, reason: "was killed for running out of memory (OOMKilled: the job needs more than its memory limit)", permanent: true };
    }
    const code = terminated?.exitCode ?? null;
    return { state: "exited", exitCode: code, reason: `exited with code ${code ?? "?"}${terminated?.reason ? ` (${terminated.reason})` : ""}` };
  }
  return { state: "pending" };
}

/** The API's pull policies as Kubernetes spells them. */
const PULL_POLICY: Record<PullPolicy, string> = { always: "Always", "if-not-present": "IfNotPresent", never: "Never" };

/** A toleration without its empty fields (as kubectl writes them). */
function toV1Toleration(t: Toleration): k8s.V1Toleration {
  const out: k8s.V1Toleration = { operator: t.operator };
  if (t.key) out.key = t.key;
  if (t.value) out.value = t.value;
  if (t.effect) out.effect = t.effect;
  if (t.tolerationSeconds !== undefined) out.tolerationSeconds = t.tolerationSeconds;
  return out;
}

/** How the pod's limits apply, for the job's log and `jobs get`; "" when it has none. */
function describeLimits(limits: Record<string, string> | undefined): string {
  const parts = Object.entries(limits ?? {}).map(([name, value]) => `${name} ${value}`);
  if (parts.length === 0) return "";
  return `limits (and requests) of the pod's container: ${parts.join(", ")}; enforced by the kubelet for the whole worker, its agent (about 40 MiB) included`;
}
