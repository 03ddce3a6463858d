/**
 * The OTP token of a Kubernetes worker, kept out of its pod spec. Each pod gets a Secret of its own
 * (`<pod name>-otp`, one key `otp-token`, immutable, labelled like the pod) and its agent's env
 * names it with secretKeyRef: whoever may read pods (dashboards, monitoring, `kubectl describe`)
 * never sees the token; only readers of Secrets in the namespace can.
 *
 * Order, and why: the pod first, then its Secret, owned by it (ownerReferences with the pod's uid,
 * which exists only once the pod does).
 * - The Secret is never without an owner: however the pod goes, the garbage collector deletes its
 *   Secret after it, and a control plane that dies between the two writes leaves a pod that cannot
 *   start (destroyed by label, as any worker whose id was never learned) rather than a loose Secret.
 * - The pod cannot start before its Secret exists: the kubelet does not create a container whose
 *   secretKeyRef (optional: false) it cannot resolve. It reports CreateContainerConfigError and tries
 *   again at its next sync of the pod (10-15 s later). One API round trip after the pod, the Secret
 *   nearly always exists before the kubelet gets that far (scheduling, the sandbox and the image come
 *   first); when it does not, the pod starts late, and isWaitingForTokenSecret lets inspect() read
 *   that state as pending rather than as a configuration error.
 * - The other order (Secret first, its owner added by a patch once the pod exists) leaves a Secret
 *   without an owner between two writes and needs the right to patch Secrets.
 * Once the agent registered, the reconcile pass deletes the Secret (its token is spent); it also
 * deletes, as a backstop, Secrets whose pod is gone (a lagging garbage collector, a leftover).
 * The control plane never sets blockOwnerDeletion, which would need rights on pods/finalizers.
 */
import * as k8s from "@kubernetes/client-node";
import { PermanentError } from "../core/errors.js";
import { codeOf, messageOf, withSignal, wrap } from "./kubernetes-api.js";
import type { TokenSecret } from "./provider.js";

export const TOKEN_SECRET_KEY = "otp-token";

export function tokenSecretName(podName: string): string {
  return `${podName}-otp`;
}

/** The agent's HODEI_OTP_TOKEN, from the pod's Secret: the pod spec holds a reference, not the token. */
export function tokenEnvVar(podName: string): k8s.V1EnvVar {
  return { name: "HODEI_OTP_TOKEN", valueFrom: { secretKeyRef: { name: tokenSecretName(podName), key: TOKEN_SECRET_KEY, optional: false } } };
}

/** The pod waits because the kubelet reached it before its token Secret existed (it retries). */
export function isWaitingForTokenSecret(pod: k8s.V1Pod): boolean {
  const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
  const name = pod.metadata?.name;
  return waiting?.reason === "CreateContainerConfigError" && name !== undefined && (waiting.message ?? "").includes(tokenSecretName(name));
}

export class TokenSecrets {
  constructor(
    private readonly core: k8s.CoreV1Api,
    private readonly namespace: string,
    /** The label that names a worker (the pods' own). */
    private readonly workerIdLabel: string,
  ) {}

  /**
   * Creates the pod's token Secret, owned by the pod. One that already exists for this pod (an
   * earlier try of the same start) is kept; one owned by an earlier pod of the same name is replaced.
   */
  async create(pod: k8s.V1Pod, otpToken: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const podName = pod.metadata?.name ?? "";
    const uid = pod.metadata?.uid;
    if (!uid) throw new Error(`kubernetes: pod ${podName} has no uid; its token Secret cannot be owned by it`);
    const name = tokenSecretName(podName);
    const body: k8s.V1Secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name, labels, ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: podName, uid }] },
      type: "Opaque",
      immutable: true,
      data: { [TOKEN_SECRET_KEY]: Buffer.from(otpToken).toString("base64") },
    };
    for (let tries = 0; ; tries++) {
      try {
        await this.core.createNamespacedSecret({ namespace: this.namespace, body }, withSignal(signal));
        return;
      } catch (err) {
        const code = codeOf(err);
        if (code === 409 && tries === 0) {
          const existing = await this.read(name, signal);
          if (existing?.metadata?.ownerReferences?.some((ref) => ref.uid === uid)) return;
          if (existing) await this.delete(name, signal);
          continue;
        }
        if (code === 403) {
          throw new PermanentError(
            `kubernetes: creating the pod's OTP token Secret ${name} was refused (${messageOf(err)}): grant the control plane's service account create, get, list and delete on secrets in namespace ${this.namespace}`,
          );
        }
        if (code === 422 || code === 400) throw new PermanentError(`kubernetes: the OTP token Secret ${name} was refused: ${messageOf(err)}`);
        throw wrap(`create secret ${name}`, err);
      }
    }
  }

  async exists(name: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.read(name, signal)) !== null;
  }

  /** Our token Secrets (by `selector`, the same labels as our pods). */
  async list(selector: string, signal?: AbortSignal): Promise<TokenSecret[]> {
    let secrets: k8s.V1SecretList;
    try {
      secrets = await this.core.listNamespacedSecret({ namespace: this.namespace, labelSelector: selector }, withSignal(signal));
    } catch (err) {
      throw wrap("list secrets", err);
    }
    return secrets.items.map((secret) => ({
      name: secret.metadata?.name ?? "",
      workerId: secret.metadata?.labels?.[this.workerIdLabel] ?? "",
      resourceId: secret.metadata?.ownerReferences?.find((ref) => ref.kind === "Pod")?.name ?? "",
      createdAtMs: Date.parse(String(secret.metadata?.creationTimestamp ?? "")) || 0,
    }));
  }

  /** Idempotent: a Secret that is already gone is not an error. */
  async delete(name: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.core.deleteNamespacedSecret({ name, namespace: this.namespace }, withSignal(signal));
    } catch (err) {
      if (codeOf(err) !== 404) throw wrap(`delete secret ${name}`, err);
    }
  }

  private async read(name: string, signal?: AbortSignal): Promise<k8s.V1Secret | null> {
    try {
      return await this.core.readNamespacedSecret({ name, namespace: this.namespace }, withSignal(signal));
    } catch (err) {
      if (codeOf(err) === 404) return null;
      throw wrap(`read secret ${name}`, err);
    }
  }
}
