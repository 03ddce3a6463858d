/**
 * The provider contract on Kubernetes, against the API emulator (test/fixtures/kube-emulator), which
 * runs each pod as a real Docker container; plus Kubernetes specifics: the pod's shape, fast
 * classified failures, and scoping by cluster id. Skips visibly when no Docker daemon answers.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { docker, skipWithoutDocker } from "../../test/fixtures/docker-daemon.js";
import { startKubeEmulator } from "../../test/fixtures/kube-emulator/index.js";
import { workerName } from "../core/ids.js";
import { classifyPod, KubernetesProvider, POD_LABELS } from "./kubernetes.js";
import { describeProvider, workerSpec } from "./provider.contract.js";

const SKIP = skipWithoutDocker("the Kubernetes tests (the emulator runs pods on Docker)");

const CLUSTER_ID = `test-${randomUUID().slice(0, 8)}`;
const EMULATOR_LABEL = `provider-test-${randomUUID().slice(0, 8)}`;

describe("KubernetesProvider", { skip: SKIP }, () => {
  let emulator: Awaited<ReturnType<typeof startKubeEmulator>>;
  let kubeConfig: k8s.KubeConfig;

  function makeProvider(clusterId = CLUSTER_ID) {
    return new KubernetesProvider({
      clusterId,
      kubeConfig,
      namespace: "default",
      defaultImage: "hodei-worker:latest",
      imagePullSecrets: [],
      nodeSelector: {},
      tolerations: [],
      agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" },
    });
  }

  before(async () => {
    emulator = await startKubeEmulator({ port: 0, docker, clusterLabel: EMULATOR_LABEL });
    const file = join(mkdtempSync(join(tmpdir(), "hodei-kube-")), "kubeconfig");
    emulator.writeKubeconfig(file);
    kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(file);
  });

  after(async () => {
    await emulator.stop();
    const left = await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${EMULATOR_LABEL}`] } });
    assert.deepEqual(left, [], "no pod container is left");
  });

  describeProvider("kubernetes (emulated)", async () => {
    const provider = makeProvider();
    return {
      provider,
      cleanup: () => provider.close(),
      killWorker: async (resource) => {
        const [container] = await docker.listContainers({ filters: { label: [`io.hodei.kube-pod=default/${resource.resourceId}`] } });
        if (container) await docker.getContainer(container.Id).kill();
      },
      unknownResourceId: workerName(randomUUID()),
    };
  });

  describe("kubernetes specifics", () => {
    it("creates a labelled pod named after the worker, restartPolicy Never, with a deadline and no token mounted", async () => {
      const provider = makeProvider();
      const s = workerSpec({ cpuMillis: 250, memoryMb: 64, deadlineSeconds: 321 });
      const resource = await provider.start(s);
      try {
        assert.equal(resource.resourceId, s.name);
        assert.equal(resource.resourceType, "pod_name");
        const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
        const pod = await core.readNamespacedPod({ name: s.name, namespace: "default" });
        assert.equal(pod.metadata?.labels?.[POD_LABELS.workerId], s.workerId);
        assert.equal(pod.metadata?.labels?.[POD_LABELS.clusterId], CLUSTER_ID);
        assert.equal(pod.metadata?.labels?.[POD_LABELS.jobId], s.jobId);
        assert.equal(pod.spec?.restartPolicy, "Never");
        assert.equal(pod.spec?.activeDeadlineSeconds, 321);
        assert.equal(pod.spec?.automountServiceAccountToken, false);
        assert.deepEqual(pod.spec?.containers[0].resources?.limits, { cpu: "250m", memory: "64Mi" });
      } finally {
        await provider.stop(resource.resourceId, 1000);
        await provider.close();
      }
    });

    it("reports a missing image within seconds as a permanent ImagePullBackOff", async () => {
      const provider = makeProvider();
      const resource = await provider.start(workerSpec({ image: `hodei-no-such-image:${randomUUID().slice(0, 6)}` }));
      try {
        const started = Date.now();
        let status = await provider.inspect(resource.resourceId);
        while (status.state !== "exited" && Date.now() - started < 15_000) {
          await new Promise((r) => setTimeout(r, 200));
          status = await provider.inspect(resource.resourceId);
        }
        assert.equal(status.state, "exited");
        assert.ok(status.state === "exited" && status.permanent, "retrying cannot help");
        assert.match(status.state === "exited" ? status.reason : "", /ErrImagePull|ImagePullBackOff/);
        assert.match(await provider.lastOutput(resource.resourceId), /Failed|BackOff/);
      } finally {
        await provider.stop(resource.resourceId, 1000);
        await provider.close();
      }
    });

    it("never lists another cluster's pods", async () => {
      const mine = makeProvider();
      const theirs = makeProvider(`${CLUSTER_ID}-other`);
      const resource = await theirs.start(workerSpec());
      try {
        assert.deepEqual(await mine.list(), []);
        assert.deepEqual((await theirs.list()).map((r) => r.resourceId), [resource.resourceId]);
      } finally {
        await theirs.stop(resource.resourceId, 1000);
        await mine.close();
        await theirs.close();
      }
    });
  });
});

describe("classifyPod", () => {
  const pod = (status: k8s.V1PodStatus): k8s.V1Pod => ({ status });
  it("reads OOMKilled, eviction, deadlines, unschedulable pods and image errors", () => {
    assert.match(
      (classifyPod(pod({ phase: "Failed", containerStatuses: [{ name: "a", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 137, reason: "OOMKilled" } } }] })) as { reason: string }).reason,
      /OOMKilled/,
    );
    assert.match((classifyPod(pod({ phase: "Failed", reason: "Evicted", message: "low on memory" })) as { reason: string }).reason, /evicted: low on memory/);
    assert.match((classifyPod(pod({ phase: "Failed", reason: "DeadlineExceeded" })) as { reason: string }).reason, /DeadlineExceeded/);
    const unschedulable = classifyPod(pod({ phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/1 nodes" }] }));
    assert.deepEqual(unschedulable, { state: "exited", exitCode: null, reason: "is unschedulable: 0/1 nodes", permanent: true });
    const config = classifyPod(pod({ phase: "Pending", containerStatuses: [{ name: "a", image: "i", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason: "CreateContainerConfigError", message: "secret x not found" } } }] }));
    assert.equal(config.state === "exited" && config.permanent, true);
    assert.deepEqual(classifyPod(pod({ phase: "Pending" })), { state: "pending" });
    assert.deepEqual(classifyPod(pod({ phase: "Running" })), { state: "running" });
    assert.deepEqual(classifyPod(pod({ phase: "Succeeded", containerStatuses: [{ name: "a", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 0, reason: "Completed" } } }] })), {
      state: "exited",
      exitCode: 0,
      reason: "exited with code 0 (Completed)",
    });
  });
});
