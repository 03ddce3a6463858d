/**
 * The order of a Kubernetes worker's writes and what covers each way it can go wrong, against the
 * API emulator (pods as Docker containers): the token Secret is created before its pod (so the
 * kubelet finds it: the container starts without CreateContainerConfigError, which the emulator is
 * set to retry only after 60 s here, as slowly as a real kubelet), then made owned by the pod; a
 * refused owner patch (a Role without `patch` on secrets) leaves a working start and a Secret that
 * the reap step deletes once its pod is gone; a refused pod create leaves no Secret; a Secret left
 * by a control plane that stopped between the Secret and the pod is deleted by the reap step once
 * past the orphan grace and not before (a hand-moved clock, direct runOnce passes). Every test
 * ends with no pod, container or token Secret left.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import pino from "pino";
import { docker, skipWithoutDocker } from "../../test/fixtures/docker-daemon.js";
import { REAL_CLUSTER_KUBECONFIG } from "../../test/fixtures/kube-cluster.js";
import { type Answer, type KubeEmulator, startKubeEmulator } from "../../test/fixtures/kube-emulator/index.js";
import { ManualClock } from "../core/clock.js";
import { PermanentError } from "../core/errors.js";
import { mintOtpToken } from "../core/token.js";
import { DEFAULT_WORKER_IMAGE } from "../core/worker-image.js";
import { createMetrics } from "../metrics.js";
import { Reconciler } from "../scheduler/reconciler.js";
import { openDatabase } from "../store/database.js";
import { driveJob } from "../store/lifecycle.contract.js";
import { Store } from "../store/store.js";
import { KubernetesProvider, POD_LABELS } from "./kubernetes.js";
import { tokenSecretName, TokenSecrets } from "./kubernetes-token-secret.js";
import { eventually, workerSpec } from "./provider.contract.js";
import { tempDir } from "../../test/fixtures/temp-dir.js";

const SKIP = REAL_CLUSTER_KUBECONFIG ? "only the emulator can deny a verb and record the order of writes (HODEI_TEST_KUBECONFIG is set)" : skipWithoutDocker("the Kubernetes token Secret tests");
const ID = randomUUID().slice(0, 8);
const CLUSTER_ID = `secret-${ID}`;
const LABEL = `token-secret-${ID}`;
const NS = "default";
const GRACE_MS = 30_000;

describe("the Kubernetes token Secret's order", { skip: SKIP }, () => {
  let emulator: KubeEmulator;
  let core: k8s.CoreV1Api;
  let provider: KubernetesProvider;
  let store: Store;
  let clock: ManualClock;
  let reconciler: Reconciler;
  const answers: Answer[] = [];
  const warnings: { fields: Record<string, unknown>; message: string }[] = [];
  const selector = `${POD_LABELS.managedBy}=hodei,${POD_LABELS.clusterId}=${CLUSTER_ID}`;

  before(async () => {
    emulator = await startKubeEmulator({ docker, clusterLabel: LABEL, configRetryMs: 60_000, onAnswer: (answer) => void answers.push(answer) });
    const file = join(tempDir("hodei-kube-"), "kubeconfig");
    emulator.writeKubeconfig(file);
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(file);
    core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    provider = new KubernetesProvider({
      clusterId: CLUSTER_ID,
      kubeConfig,
      namespace: NS,
      defaultImage: DEFAULT_WORKER_IMAGE,
      imagePullSecrets: [],
      nodeSelector: {},
      tolerations: [],
      agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" },
      log: { warn: (fields, message) => void warnings.push({ fields: fields as Record<string, unknown>, message }) },
    });
  });

  after(async () => {
    await provider?.close();
    await store?.close();
    await emulator?.stop();
    assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${LABEL}`] } }), [], "no pod container is left");
  });

  beforeEach(async () => {
    answers.length = 0;
    warnings.length = 0;
    const { db, kind } = await openDatabase("sqlite::memory:");
    await store?.close();
    store = new Store(db, kind);
    // Behind present time: the clock is moved to the Secrets' creationTimestamps from here.
    clock = new ManualClock(Date.now() - 5000);
    reconciler = new Reconciler({
      store,
      clock,
      log: pino({ level: process.env.TEST_LOG ?? "silent" }),
      metrics: createMetrics(),
      // No room: a job whose attempt is lost is not started again in these tests.
      providers: new Map([["kubernetes", { provider, maxWorkers: 0, workerServerUrl: "" }]]),
      registrationTimeoutMs: 3_600_000,
      heartbeatTimeoutMs: 3_600_000,
      // Every pass run after the clock moved is a full one (the reap step runs in full passes only).
      reconcileIntervalMs: 1,
      orphanGraceMs: GRACE_MS,
      stopGraceMs: 0,
      agents: { cancel: () => false },
    });
  });

  /** The provider's writes, in order: "POST secrets 201". */
  const writes = () =>
    answers.filter((a) => !["GET", "WATCH"].includes(a.method)).map((a) => `${a.method} ${a.path.split("?")[0].split("/").slice(5).join("/")} ${a.code}`);
  const secretOf = (name: string) => core.readNamespacedSecret({ name, namespace: NS }).catch((err: { code?: number }) => (err.code === 404 ? null : Promise.reject(err)));
  const createdAtMs = (secret: k8s.V1Secret) => Date.parse(String(secret.metadata?.creationTimestamp));
  const moveClockTo = (ms: number) => clock.advance(ms - clock.nowMs());

  /** No pod, no container and (once the garbage collector caught up) no token Secret of ours. */
  async function assertNothingLeft(): Promise<void> {
    assert.deepEqual((await core.listNamespacedPod({ namespace: NS, labelSelector: selector })).items.map((p) => p.metadata?.name), [], "no pod is left");
    assert.deepEqual(await eventually(() => provider.listTokenSecrets(), (left) => left.length === 0, 10_000), [], "no token Secret is left");
    assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${LABEL}`] } }), [], "no container is left");
  }

  it("creates the Secret before the pod, so the container starts at once (never CreateContainerConfigError), then makes the pod its owner", async () => {
    const s = workerSpec();
    const secretName = tokenSecretName(s.name);
    const resource = await provider.start(s);
    try {
      assert.deepEqual(writes(), ["POST secrets 201", "POST pods 201", `PATCH secrets/${secretName} 200`]);
      const pod = await core.readNamespacedPod({ name: s.name, namespace: NS });
      const secret = await core.readNamespacedSecret({ name: secretName, namespace: NS });
      assert.deepEqual(JSON.parse(JSON.stringify(secret.metadata?.ownerReferences)), [{ apiVersion: "v1", kind: "Pod", name: s.name, uid: pod.metadata?.uid }], "owned by the pod's uid; no blockOwnerDeletion");
      const events = await eventually(
        async () => (await core.listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=${s.name}` })).items,
        (items) => items.some((e) => e.reason === "Started"),
        10_000,
      );
      assert.ok(events.some((e) => e.reason === "Started"), "the container started without the kubelet's 60 s retry");
      assert.deepEqual(events.filter((e) => e.type === "Warning").map((e) => `${e.reason}: ${e.message}`), [], "no CreateContainerConfigError");
      assert.deepEqual(warnings, []);
    } finally {
      await provider.stop(resource.resourceId, 1000);
    }
    await assertNothingLeft();
  });

  it("starts the worker when the owner patch is refused, logs it with the worker id, keeps the Secret while its pod may redeem the token, and the reap step deletes it once the pod is gone", async () => {
    const {
      workers: [worker],
    } = await driveJob(store, clock, `patch-${ID}`, "provisioning", { spec: { provider: "kubernetes" } });
    const secretName = tokenSecretName(worker.name);
    emulator.deny("patch", "secrets");
    try {
      const onCreated = async (r: { resourceId: string }) => void (await store.attempts.recordProvisioned(worker.id, r.resourceId, "pod_name", clock.nowMs()));
      await provider.start(workerSpec({ workerId: worker.id, name: worker.name, jobId: worker.job_id, onCreated }));
    } finally {
      emulator.allow("patch", "secrets");
    }
    try {
      assert.deepEqual(writes(), ["POST secrets 201", "POST pods 201", `PATCH secrets/${secretName} 403`]);
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0].fields.workerId, worker.id);
      assert.match(String(warnings[0].fields.err), /patch, and delete on secrets|cannot patch resource "secrets"/);
      const secret = (await secretOf(secretName))!;
      assert.equal(secret.metadata?.ownerReferences, undefined, "the Secret has no owner");
      assert.deepEqual((await provider.listTokenSecrets()).map((t) => [t.name, t.resourceId]), [[secretName, worker.name]], "an ownerless Secret names its pod by its name");
      const output = await eventually(() => provider.lastOutput(worker.name), (text) => /cannot register with the control plane/.test(text));
      assert.match(output, /cannot register with the control plane/, "the agent read its token from the Secret");

      moveClockTo(createdAtMs(secret) + GRACE_MS - 1);
      await reconciler.runOnce();
      assert.ok(await secretOf(secretName), "young: kept");
      clock.advance(1000);
      await reconciler.runOnce();
      assert.ok(await secretOf(secretName), "past the grace, kept: its pod runs and its token may still be redeemed");

      await provider.stop(worker.name, 1000);
      assert.ok(await secretOf(secretName), "the garbage collector does not take a Secret without an owner");
      clock.advance(1);
      await reconciler.runOnce();
      await reconciler.settle();
      assert.equal(await secretOf(secretName), null, "the reap step deleted it");
    } finally {
      await provider.stop(worker.name, 1000);
      await provider.deleteTokenSecret(secretName);
    }
    await assertNothingLeft();
  });

  it("deletes the Secret in the same start when the pod create is refused", async () => {
    const s = workerSpec();
    emulator.deny("create", "pods");
    try {
      await assert.rejects(provider.start(s), (err: Error) => err instanceof PermanentError && /cannot create resource "pods"/.test(err.message));
    } finally {
      emulator.allow("create", "pods");
    }
    assert.deepEqual(writes(), ["POST secrets 201", "POST pods 403", `DELETE secrets/${tokenSecretName(s.name)} 200`]);
    assert.equal(await secretOf(tokenSecretName(s.name)), null);
    await assertNothingLeft();
  });

  it("deletes a Secret left by a control plane stopped between the Secret and the pod once past the orphan grace, and not before", async () => {
    const {
      workers: [worker],
    } = await driveJob(store, clock, `dead-${ID}`, "provisioning", { spec: { provider: "kubernetes" } });
    // As the start of a control plane that stopped right after this write: its worker row, no pod.
    const secrets = new TokenSecrets(core, NS, POD_LABELS.workerId);
    const labels = (workerId: string) => ({ [POD_LABELS.managedBy]: "hodei", [POD_LABELS.clusterId]: CLUSTER_ID, [POD_LABELS.workerId]: workerId });
    await secrets.create(worker.name, worker.id, mintOtpToken(), labels(worker.id));
    // And one whose worker row is gone too (removed by retention).
    const rowless = workerSpec();
    await secrets.create(rowless.name, rowless.workerId, mintOtpToken(), labels(rowless.workerId));
    const names = [tokenSecretName(worker.name), tokenSecretName(rowless.name)];
    const oldest = Math.min(...(await Promise.all(names.map(async (n) => createdAtMs((await secretOf(n))!)))));
    const newest = Math.max(...(await Promise.all(names.map(async (n) => createdAtMs((await secretOf(n))!)))));

    moveClockTo(oldest + GRACE_MS - 1);
    await reconciler.runOnce();
    assert.equal((await Promise.all(names.map(secretOf))).filter(Boolean).length, 2, "younger than the grace: both kept");
    moveClockTo(newest + GRACE_MS);
    await reconciler.runOnce();
    await reconciler.settle();
    assert.deepEqual(await Promise.all(names.map(secretOf)), [null, null], "past the grace: both deleted");
    await assertNothingLeft();
  });
});
