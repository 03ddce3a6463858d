/**
 * The OTP token of a Kubernetes worker, kept out of its pod spec. Each pod gets a Secret of its own
 * (`<pod name>-otp`, one key `otp-token`, immutable, labelled like the pod) and its agent's env
 * names it with secretKeyRef: whoever may read pods (dashboards, monitoring, `kubectl describe`)
 * never sees the token; only readers of Secrets in the namespace can.
 *
 * Order, and why: the Secret first, then the pod, then the pod made the Secret's owner (a patch of
 * its ownerReferences with the pod's uid, which exists only once the pod does).
 * - The kubelet always finds the Secret: it does not create a container whose secretKeyRef
 *   (optional: false) it cannot resolve, reports CreateContainerConfigError and tries again only at
 *   its next sync of the pod (10-15 s later). With the pod first, a kubelet that got there before
 *   the Secret cost the worker that long.
 * - Owned, the Secret goes with its pod: however the pod goes, the garbage collector deletes it.
 * - Between the Secret's create and the patch it has no owner, and each way that can go wrong is
 *   covered: a pod create that fails deletes the Secret in the same start; a patch that fails is
 *   logged and the start goes on (the pod can start; the reconcile pass deletes the Secret once the
 *   agent registered, or once its pod is gone); a control plane that dies between the writes leaves
 *   a labelled Secret that the reconcile pass deletes once it is older than the orphan grace and no
 *   live worker or pod needs it (list() names an ownerless Secret's pod by the Secret's name).
 * - The patch needs the right to patch Secrets (deploy/kubernetes/hodei.yaml).
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

/** The pod a token Secret was made for (tokenSecretName's inverse); "" for another name. */
export function podNameOf(secretName: string): string {
  return secretName.endsWith("-otp") ? secretName.slice(0, -"-otp".length) : "";
}

/** The agent's HODEI_OTP_TOKEN, from the pod's Secret: the pod spec holds a reference, not the token. */
export function tokenEnvVar(podName: string): k8s.V1EnvVar {
  return { name: "HODEI_OTP_TOKEN", valueFrom: { secretKeyRef: { name: tokenSecretName(podName), key: TOKEN_SECRET_KEY, optional: false } } };
}

/**
 * The pod waits because the kubelet found no token Secret when it got to the pod (it retries): the
 * Secret was deleted before the container was created (a start whose pod create failed after the
 * pod was in fact made, or a hand).
 */
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
   * Creates the token Secret of the pod `podName` (not created yet), without an owner until own().
   * One that already exists for this worker with this token (an earlier try of the same start) is
   * kept; one of this worker with another token is replaced; another worker's is refused.
   */
  async create(podName: string, workerId: string, otpToken: string, labels: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const name = tokenSecretName(podName);
    const encoded = Buffer.from(otpToken).toString("base64");
    const body: k8s.V1Secret = { apiVersion: "v1", kind: "Secret", metadata: { name, labels }, type: "Opaque", immutable: true, data: { [TOKEN_SECRET_KEY]: encoded } };
    for (let tries = 0; ; tries++) {
      try {
        await this.core.createNamespacedSecret({ namespace: this.namespace, body }, withSignal(signal));
        return;
      } catch (err) {
        const code = codeOf(err);
        if (code === 409 && tries === 0) {
          const existing = await this.read(name, signal);
          if (existing && existing.metadata?.labels?.[this.workerIdLabel] !== workerId) throw new Error(`kubernetes: Secret ${name} exists and is not this worker's`);
          if (existing?.data?.[TOKEN_SECRET_KEY] === encoded) return;
          if (existing) await this.delete(name, signal);
          continue;
        }
        if (code === 403) {
          throw new PermanentError(`kubernetes: creating the pod's OTP token Secret ${name} was refused (${messageOf(err)}): ${this.grant()}`);
        }
        if (code === 422 || code === 400) throw new PermanentError(`kubernetes: the OTP token Secret ${name} was refused: ${messageOf(err)}`);
        throw wrap(`create secret ${name}`, err);
      }
    }
  }

  /** Makes `pod` the owner of its token Secret (a JSON patch of metadata.ownerReferences), so the garbage collector deletes it after the pod. */
  async own(pod: k8s.V1Pod, signal?: AbortSignal): Promise<void> {
    const podName = pod.metadata?.name ?? "";
    const uid = pod.metadata?.uid;
    const name = tokenSecretName(podName);
    if (!uid) throw new Error(`kubernetes: pod ${podName} has no uid; its token Secret ${name} cannot be owned by it`);
    const owner: k8s.V1OwnerReference = { apiVersion: "v1", kind: "Pod", name: podName, uid };
    try {
      await this.core.patchNamespacedSecret({ name, namespace: this.namespace, body: [{ op: "add", path: "/metadata/ownerReferences", value: [owner] }] }, withSignal(signal));
    } catch (err) {
      if (codeOf(err) === 403) throw new Error(`kubernetes: making pod ${podName} the owner of its OTP token Secret ${name} was refused (${messageOf(err)}): ${this.grant()}`);
      throw wrap(`patch secret ${name}`, err);
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
      // Ownerless (not yet patched, or the patch failed): the pod it was made for, by its name.
      resourceId: secret.metadata?.ownerReferences?.find((ref) => ref.kind === "Pod")?.name ?? podNameOf(secret.metadata?.name ?? ""),
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

  private grant(): string {
    return `grant the control plane's service account create, get, list, patch and delete on secrets in namespace ${this.namespace}`;
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
