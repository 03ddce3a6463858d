/**
 * The provider contract on Kubernetes, against the API emulator (test/fixtures/kube-emulator), which
 * runs each pod as a real Docker container, or against a real cluster with HODEI_TEST_KUBECONFIG
 * (test/fixtures/kube-cluster.ts); plus Kubernetes specifics: the pod's shape, fast classified
 * failures, scoping by cluster id, the OTP token kept in a Secret of the pod's own (never in the pod
 * spec, gone with the pod), and what real clusters do that the provider must survive: the default
 * image on a node that only has it locally, a cluster id that is no label value, pods too big for
 * the room left, InvalidImageName, force deletion, watches the server ends. After every contract
 * test no token Secret is left. Skips visibly when no Docker daemon answers (emulator only).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { docker } from "../../test/fixtures/docker-daemon.js";
import { emulatorOnly, skipWithoutCluster, startTestCluster, type TestCluster } from "../../test/fixtures/kube-cluster.js";
import { startKubeEmulator } from "../../test/fixtures/kube-emulator/index.js";
import { InvalidInputError } from "../core/errors.js";
import { workerName } from "../core/ids.js";
import { DEFAULT_WORKER_IMAGE } from "../core/worker-image.js";
import { classifyPod, KubernetesProvider, POD_LABELS } from "./kubernetes.js";
import { PodWatch } from "./kubernetes-watch.js";
import { TOKEN_SECRET_KEY, tokenSecretName } from "./kubernetes-token-secret.js";
import { describeProvider, eventually, workerSpec } from "./provider.contract.js";
import { tempDir } from "../../test/fixtures/temp-dir.js";

const SKIP = skipWithoutCluster("the Kubernetes tests");

const CLUSTER_ID = `test-${randomUUID().slice(0, 8)}`;
const EMULATOR_LABEL = `provider-test-${randomUUID().slice(0, 8)}`;

describe("KubernetesProvider", { skip: SKIP }, () => {
  let cluster: TestCluster;
  let kubeConfig: k8s.KubeConfig;
  let NS = "default";

  function makeProvider(clusterId = CLUSTER_ID) {
    return new KubernetesProvider({
      clusterId,
      kubeConfig,
      namespace: NS,
      defaultImage: DEFAULT_WORKER_IMAGE,
      imagePullSecrets: [],
      nodeSelector: {},
      tolerations: [],
      agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" },
    });
  }

  before(async () => {
    cluster = await startTestCluster({ clusterLabel: EMULATOR_LABEL });
    kubeConfig = cluster.kubeConfig;
    NS = cluster.namespace;
  });

  after(async () => {
    await cluster.stop();
    assert.deepEqual(await cluster.containersLeft(), [], "no pod container is left");
  });

  /** Our token Secrets of `clusterId`, once the garbage collector has caught up with deleted pods. */
  async function tokenSecretsLeft(provider: KubernetesProvider) {
    return eventually(() => provider.listTokenSecrets(), (secrets) => secrets.length === 0, 10_000);
  }

  describeProvider("kubernetes (emulated)", async () => {
    const provider = makeProvider();
    return {
      provider,
      cleanup: async () => {
        assert.deepEqual(await tokenSecretsLeft(provider), [], "no token Secret is left");
        await provider.close();
      },
      killWorker: async (resource) => {
        if (!cluster.emulator) {
          // A real cluster's containers are out of reach: the pod goes at once instead.
          await kubeConfig.makeApiClient(k8s.CoreV1Api).deleteNamespacedPod({ name: resource.resourceId, namespace: NS, gracePeriodSeconds: 0 });
          return;
        }
        const [container] = await docker.listContainers({ filters: { label: [`io.hodei.kube-pod=${NS}/${resource.resourceId}`] } });
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
        const pod = await core.readNamespacedPod({ name: s.name, namespace: NS });
        assert.equal(pod.metadata?.labels?.[POD_LABELS.workerId], s.workerId);
        assert.equal(pod.metadata?.labels?.[POD_LABELS.clusterId], CLUSTER_ID);
        assert.equal(pod.metadata?.labels?.[POD_LABELS.jobId], s.jobId);
        assert.equal(pod.spec?.restartPolicy, "Never");
        assert.equal(pod.spec?.activeDeadlineSeconds, 321);
        assert.equal(pod.spec?.automountServiceAccountToken, false);
        assert.deepEqual(pod.spec?.containers[0].resources?.limits, { cpu: "250m", memory: "64Mi" });
        assert.match(resource.resourcesApplied ?? "", /pod's container: cpu 250m, memory 64Mi; enforced by the kubelet/);
      } finally {
        await provider.stop(resource.resourceId, 1000);
        await provider.close();
      }
    });

    it("keeps the OTP token out of the pod: its env names the pod's own Secret, owned by the pod, which holds the token while the agent waits to register and goes with the pod", async () => {
      const provider = makeProvider();
      const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
      const s = workerSpec(); // an unreachable server: the agent keeps trying to register
      const resource = await provider.start(s);
      const secretName = tokenSecretName(s.name);
      try {
        const pod = await core.readNamespacedPod({ name: s.name, namespace: NS });
        const json = JSON.stringify(pod);
        for (const needle of [s.otpToken, Buffer.from(s.otpToken).toString("base64"), "hodei_otp_"]) assert.equal(json.includes(needle), false, "the pod holds no token");
        const tokenVar = pod.spec?.containers[0].env?.find((e) => e.name === "HODEI_OTP_TOKEN");
        assert.deepEqual(JSON.parse(JSON.stringify(tokenVar)), { name: "HODEI_OTP_TOKEN", valueFrom: { secretKeyRef: { name: secretName, key: TOKEN_SECRET_KEY, optional: false } } });

        const secret = await core.readNamespacedSecret({ name: secretName, namespace: NS });
        assert.equal(Buffer.from(secret.data?.[TOKEN_SECRET_KEY] ?? "", "base64").toString(), s.otpToken);
        assert.deepEqual(
          secret.metadata?.ownerReferences?.map((r) => [r.apiVersion, r.kind, r.name, r.uid]),
          [["v1", "Pod", s.name, pod.metadata?.uid]],
          "owned by its pod",
        );
        assert.equal(secret.immutable, true);
        assert.equal(secret.metadata?.labels?.[POD_LABELS.workerId], s.workerId);
        assert.equal(secret.metadata?.labels?.[POD_LABELS.clusterId], CLUSTER_ID);
        assert.deepEqual(await provider.listTokenSecrets(), [{ name: secretName, workerId: s.workerId, resourceId: s.name, createdAtMs: Date.parse(secret.metadata!.creationTimestamp as unknown as string) }]);

        const output = await eventually(() => provider.lastOutput(resource.resourceId), (text) => /cannot register with the control plane/.test(text));
        assert.match(output, /cannot register with the control plane/, "the agent read its token from the Secret and tries to register");
        assert.equal(output.includes(s.otpToken), false);
        assert.deepEqual(await provider.inspect(resource.resourceId), { state: "running" });
        assert.ok(await core.readNamespacedSecret({ name: secretName, namespace: NS }), "the Secret is there while the agent waits to register");
      } finally {
        await provider.stop(resource.resourceId, 1000);
        await provider.close();
      }
      assert.deepEqual(await tokenSecretsLeft(provider), [], "the Secret went with its pod");
      const gone = await core.readNamespacedSecret({ name: secretName, namespace: NS }).catch((err) => err);
      assert.equal(gone.code, 404);
    });

    it("reads a pod the kubelet reached before its token Secret as pending while the Secret exists, and as lost (not permanently) once it is gone", { skip: emulatorOnly("retry a pod's configuration slowly") }, async () => {
      // An emulator whose kubelet retries slowly, so the pod keeps showing CreateContainerConfigError after its Secret appeared.
      const slow = await startKubeEmulator({ port: 0, docker, clusterLabel: `${EMULATOR_LABEL}-slow`, configRetryMs: 60_000 });
      const file = join(tempDir("hodei-kube-"), "kubeconfig");
      slow.writeKubeconfig(file);
      const config = new k8s.KubeConfig();
      config.loadFromFile(file);
      const core = config.makeApiClient(k8s.CoreV1Api);
      const provider = new KubernetesProvider({ clusterId: CLUSTER_ID, kubeConfig: config, namespace: NS, defaultImage: DEFAULT_WORKER_IMAGE, imagePullSecrets: [], nodeSelector: {}, tolerations: [], agentEnv: {} });
      const name = workerName(randomUUID());
      const secretName = tokenSecretName(name);
      try {
        await core.createNamespacedPod({
          namespace: NS,
          body: {
            metadata: { name },
            spec: { restartPolicy: "Never", containers: [{ name: "agent", image: DEFAULT_WORKER_IMAGE, command: ["sleep", "60"], env: [{ name: "HODEI_OTP_TOKEN", valueFrom: { secretKeyRef: { name: secretName, key: TOKEN_SECRET_KEY } } }] }] },
          },
        });
        const waiting = await eventually(
          () => core.readNamespacedPod({ name, namespace: NS }),
          (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "CreateContainerConfigError",
        );
        assert.equal(waiting.status?.containerStatuses?.[0]?.state?.waiting?.reason, "CreateContainerConfigError");
        assert.equal(classifyPod(waiting).state, "exited", "without the provider's knowledge it would read as a configuration error");
        const missing = await provider.inspect(name);
        assert.equal(missing.state, "exited");
        assert.ok(missing.state === "exited" && !missing.permanent, "a new attempt gets a new Secret: not permanent");
        assert.match(missing.state === "exited" ? missing.reason : "", new RegExp(`OTP token Secret ${secretName} is missing`));

        await core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: secretName }, stringData: { [TOKEN_SECRET_KEY]: "x" } } });
        assert.deepEqual(await provider.inspect(name), { state: "pending" }, "the kubelet will retry: pending");
      } finally {
        await provider.close();
        await slow.stop();
      }
      assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${EMULATOR_LABEL}-slow`] } }), []);
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

    it("sets the pod's imagePullPolicy from the job's pull policy for the job's own image (the provider's, IfNotPresent by default, for the default image), and adds the job's node selector and tolerations to the provider's", async () => {
      const provider = new KubernetesProvider({
        clusterId: CLUSTER_ID,
        kubeConfig,
        namespace: NS,
        defaultImage: DEFAULT_WORKER_IMAGE,
        imagePullSecrets: [],
        nodeSelector: { "kubernetes.io/os": "linux" },
        tolerations: [{ key: "hodei", operator: "Exists", value: "", effect: "NoSchedule" }],
        agentEnv: {},
      });
      const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
      const started: string[] = [];
      try {
        for (const [policy, expected] of [["always", "Always"], ["if-not-present", "IfNotPresent"], ["never", "Never"]] as const) {
          const s = workerSpec({
            pullPolicy: policy,
            image: DEFAULT_WORKER_IMAGE,
            nodeSelector: { "kubernetes.io/hostname": "emulator" },
            tolerations: [
              { key: "hodei", operator: "Exists", value: "", effect: "NoSchedule" },
              { key: "spot", operator: "Equal", value: "yes", effect: "NoExecute", tolerationSeconds: 60 },
            ],
          });
          started.push((await provider.start(s)).resourceId);
          const pod = await core.readNamespacedPod({ name: s.name, namespace: NS });
          assert.equal(pod.spec?.containers[0].imagePullPolicy, expected);
          assert.deepEqual(pod.spec?.nodeSelector, { "kubernetes.io/os": "linux", "kubernetes.io/hostname": "emulator" });
          assert.deepEqual(JSON.parse(JSON.stringify(pod.spec?.tolerations)), [
            { key: "hodei", operator: "Exists", effect: "NoSchedule" },
            { key: "spot", operator: "Equal", value: "yes", effect: "NoExecute", tolerationSeconds: 60 },
          ]);
        }
        const own = workerSpec({ pullPolicy: "always" });
        started.push((await provider.start(own)).resourceId);
        const ofDefault = await core.readNamespacedPod({ name: own.name, namespace: NS });
        assert.equal(ofDefault.spec?.containers[0].image, DEFAULT_WORKER_IMAGE);
        assert.equal(ofDefault.spec?.containers[0].imagePullPolicy, "IfNotPresent", "a job without an image of its own gets the provider's policy");
        await assert.rejects(
          provider.start(workerSpec({ nodeSelector: { "kubernetes.io/os": "windows" } })),
          (err: Error) => err.name === "PermanentError" && /kubernetes\.io\/os=windows.*only schedules on kubernetes\.io\/os=linux/.test(err.message),
          "a job may not change a node label the provider requires",
        );
      } finally {
        for (const name of started) await provider.stop(name, 1000);
        await provider.close();
      }
      assert.deepEqual((await core.listNamespacedPod({ namespace: NS, labelSelector: `${POD_LABELS.clusterId}=${CLUSTER_ID}` })).items, []);
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

  describe("as a real cluster behaves", () => {
    it("runs invalid image names to a permanent InvalidImageName within seconds", async () => {
      const provider = makeProvider();
      const resource = await provider.start(workerSpec({ image: "Bad/Image:Name" }));
      try {
        const status = await eventually(() => provider.inspect(resource.resourceId), (s) => s.state === "exited", 15_000);
        assert.equal(status.state, "exited");
        assert.ok(status.state === "exited" && status.permanent, "retrying cannot help");
        assert.match(status.state === "exited" ? status.reason : "", /^could not start: InvalidImageName: .*Bad\/Image:Name/);
      } finally {
        await provider.stop(resource.resourceId, 1000);
        await provider.close();
      }
    });

    it("waits for the pod to be gone, not only its object, even when asked to stop with no grace", async () => {
      const provider = makeProvider();
      const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
      const resource = await provider.start(workerSpec());
      await eventually(() => provider.inspect(resource.resourceId), (s) => s.state === "running");
      const asked: (number | undefined)[] = [];
      const deletes = { pre: async (context: k8s.RequestContext) => (context.getHttpMethod() === "DELETE" && asked.push(Number(new URL(context.getUrl()).searchParams.get("gracePeriodSeconds"))), context), post: async (r: k8s.ResponseContext) => r };
      const spying = new KubernetesProvider({ clusterId: CLUSTER_ID, kubeConfig, namespace: NS, defaultImage: DEFAULT_WORKER_IMAGE, imagePullSecrets: [], nodeSelector: {}, tolerations: [], agentEnv: {} });
      const configuration = k8s.createConfiguration({ authMethods: { default: kubeConfig }, baseServer: new k8s.ServerConfiguration(kubeConfig.getCurrentCluster()!.server, {}), promiseMiddleware: [deletes] });
      (spying as unknown as { core: k8s.CoreV1Api }).core = new k8s.CoreV1Api(configuration);
      try {
        await spying.stop(resource.resourceId, 0);
        assert.deepEqual(asked, [1], "a 0 ms stop still asks for 1 s of grace: the object goes only once the container is stopped");
        assert.equal((await core.readNamespacedPod({ name: resource.resourceId, namespace: NS }).catch((e) => e)).code, 404);
        if (cluster.emulator) {
          assert.deepEqual(cluster.emulator.lingeringContainers(), [], "nothing lingers");
          assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-pod=${NS}/${resource.resourceId}`] } }), [], "its container is gone when stop returns");
        }
      } finally {
        await provider.close();
        await spying.close();
      }
    });

    it("is woken by the pod's watch when the pod goes, not by its poll", async () => {
      // A poll of ten minutes: a stop that returns within the test's time was woken by the watch.
      const provider = new KubernetesProvider({ clusterId: CLUSTER_ID, kubeConfig, namespace: NS, defaultImage: DEFAULT_WORKER_IMAGE, imagePullSecrets: [], nodeSelector: {}, tolerations: [], agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" }, stopPollMs: 600_000 });
      const core = kubeConfig.makeApiClient(k8s.CoreV1Api);
      try {
        const resource = await provider.start(workerSpec());
        await eventually(() => provider.inspect(resource.resourceId), (s) => s.state === "running");
        await provider.stop(resource.resourceId, 1000);
        assert.equal((await core.readNamespacedPod({ name: resource.resourceId, namespace: NS }).catch((e) => e)).code, 404, "gone when stop returns");
      } finally {
        await provider.close();
      }
    });

    it("refuses, at start, a cluster id that the API server would refuse as a label value", () => {
      for (const clusterId of ["prod-", "-prod", "x".repeat(64), "a b", ""]) {
        assert.throws(
          () => new KubernetesProvider({ clusterId, kubeConfig, namespace: NS, defaultImage: DEFAULT_WORKER_IMAGE, imagePullSecrets: [], nodeSelector: {}, tolerations: [], agentEnv: {} }),
          (err: Error) => err instanceof InvalidInputError && err.message.includes(`the cluster id "${clusterId}"`) && /Set HODEI_CLUSTER_ID/.test(err.message),
          clusterId,
        );
      }
      assert.ok(makeProvider("prod-1.eu_west"), "a valid label value is accepted");
    });

    describe("on an emulated cluster whose one node has 1 CPU and the worker image loaded, with no registry", { skip: emulatorOnly("size a node, choose its images and end watches") }, () => {
      let small: Awaited<ReturnType<typeof startKubeEmulator>>;
      let smallConfig: k8s.KubeConfig;
      const label = `${EMULATOR_LABEL}-small`;
      const smallProvider = (overrides: Partial<ConstructorParameters<typeof KubernetesProvider>[0]> = {}) =>
        new KubernetesProvider({ clusterId: CLUSTER_ID, kubeConfig: smallConfig, namespace: "default", defaultImage: DEFAULT_WORKER_IMAGE, imagePullSecrets: [], nodeSelector: {}, tolerations: [], agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" }, ...overrides });

      before(async () => {
        small = await startKubeEmulator({ port: 0, docker, clusterLabel: label, images: { nodeImages: [DEFAULT_WORKER_IMAGE] }, nodeAllocatable: { cpu: "1", memory: "4Gi", pods: "110" }, forceDeleteLingerMs: 3000 });
        const file = join(tempDir("hodei-kube-"), "kubeconfig");
        small.writeKubeconfig(file);
        smallConfig = new k8s.KubeConfig();
        smallConfig.loadFromFile(file);
      });

      after(async () => {
        await small.stop();
        assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${label}`] } }), [], "no pod container is left");
      });

      it("starts the default image on a node that only has it locally (IfNotPresent), where Always would fail to pull it", async () => {
        const provider = smallProvider();
        const always = smallProvider({ defaultImagePullPolicy: "always" });
        const core = smallConfig.makeApiClient(k8s.CoreV1Api);
        const s = workerSpec();
        const resource = await provider.start(s);
        const pulled = await always.start(workerSpec());
        try {
          assert.equal((await core.readNamespacedPod({ name: s.name, namespace: "default" })).spec?.containers[0].imagePullPolicy, "IfNotPresent");
          assert.deepEqual(await eventually(() => provider.inspect(resource.resourceId), (st) => st.state === "running"), { state: "running" });
          const failed = await eventually(() => always.inspect(pulled.resourceId), (st) => st.state === "exited", 15_000);
          assert.ok(failed.state === "exited" && failed.permanent && /ErrImagePull|ImagePullBackOff/.test(failed.reason), JSON.stringify(failed));
        } finally {
          await provider.stop(resource.resourceId, 1000);
          await always.stop(pulled.resourceId, 1000);
          await provider.close();
          await always.close();
        }
      });

      it("keeps a worker that asks for more CPU than is left pending with the scheduler's message, and starts it once the first one is stopped", async () => {
        const provider = smallProvider();
        const first = await provider.start(workerSpec({ cpuMillis: 600 }));
        let second: Awaited<ReturnType<typeof provider.start>> | undefined;
        try {
          await eventually(() => provider.inspect(first.resourceId), (st) => st.state === "running");
          second = await provider.start(workerSpec({ cpuMillis: 600 }));
          const waiting = await eventually(() => provider.inspect(second!.resourceId), (st) => st.state === "pending" && st.detail !== undefined);
          assert.deepEqual(waiting, {
            state: "pending",
            detail: "the scheduler cannot place the pod: 0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
          });
          await provider.stop(first.resourceId, 1000);
          assert.deepEqual(await eventually(() => provider.inspect(second!.resourceId), (st) => st.state === "running"), { state: "running" });
        } finally {
          await provider.stop(first.resourceId, 1000);
          if (second) await provider.stop(second.resourceId, 1000);
          await provider.close();
        }
      });

      it("reads a force-deleted pod as gone while its container lingers, and the lingering container is still reaped", async () => {
        const provider = smallProvider();
        const core = smallConfig.makeApiClient(k8s.CoreV1Api);
        const resource = await provider.start(workerSpec());
        try {
          await eventually(() => provider.inspect(resource.resourceId), (st) => st.state === "running");
          await core.deleteNamespacedPod({ name: resource.resourceId, namespace: "default", gracePeriodSeconds: 0 });
          assert.deepEqual(await provider.inspect(resource.resourceId), { state: "gone" });
          assert.deepEqual(await provider.list(), [], "not listed: nothing for the reaper to find");
          const containers = () => docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-pod=default/${resource.resourceId}`] } });
          assert.equal((await containers())[0]?.State, "running", "its container outlives the object");
          await provider.stop(resource.resourceId, 1000);
          const left = await eventually(containers, (c) => c.length === 0 && small.lingeringContainers().length === 0, 15_000);
          assert.deepEqual(left, [], "the kubelet reaped the container");
        } finally {
          await provider.close();
        }
      });

      it("resumes a watch the server closed from its last resourceVersion, so changes made while it was down are not missed", async () => {
        const changed: string[] = [];
        const held: (() => void)[] = [];
        const watch = new PodWatch({ kubeConfig: smallConfig, namespace: "default", labelSelector: `${POD_LABELS.clusterId}=${CLUSTER_ID}`, onChange: (name) => changed.push(name), schedule: (connect) => held.push(connect) });
        const provider = smallProvider();
        const first = await provider.start(workerSpec());
        try {
          watch.ensure();
          await eventually(async () => changed.includes(first.resourceId), Boolean, 10_000);
          assert.ok(changed.includes(first.resourceId), "the first watch saw the pod");
          // Settled (its container running) before the watch ends, so that it has nothing to replay for it.
          await eventually(() => provider.inspect(first.resourceId), (st) => st.state === "running");
          assert.equal(small.expireWatches() >= 1, true);
          await eventually(async () => held.length, (n) => n === 1, 10_000);
          assert.equal(held.length, 1, "the watch ended and asked to be resumed at once");
          const from = watch.lastResourceVersion;
          assert.match(from ?? "", /^\d+$/, "it remembered where it was (the BOOKMARK before the end)");
          // While no watch runs, a second worker starts.
          const second = await provider.start(workerSpec());
          changed.length = 0;
          held.shift()!();
          await eventually(async () => changed.includes(second.resourceId), Boolean, 10_000);
          assert.ok(changed.includes(second.resourceId), "the resumed watch replayed what happened while it was down");
          // A watch that started over would send ADDED for the first pod; one that resumed sends it only
          // if the pod changed after `from` (on a loaded machine a status update can still land then).
          const firstNow = await smallConfig.makeApiClient(k8s.CoreV1Api).readNamespacedPod({ name: first.resourceId, namespace: "default" });
          const changedSince = BigInt(firstNow.metadata!.resourceVersion!) > BigInt(from!);
          assert.ok(!changed.includes(first.resourceId) || changedSince, `and did not start over: the first pod is replayed only if it changed after ${from} (it is at ${firstNow.metadata!.resourceVersion})`);
          assert.equal(watch.connections, 2);
          await provider.stop(second.resourceId, 1000);
        } finally {
          watch.close();
          await provider.stop(first.resourceId, 1000);
          await provider.close();
        }
      });
    });
  });
});

describe("classifyPod", () => {
  const pod = (status: k8s.V1PodStatus): k8s.V1Pod => ({ status });
  it("reads OOMKilled (permanent: no retry), eviction, deadlines, unschedulable pods and image errors", () => {
    const oom = classifyPod(pod({ phase: "Failed", containerStatuses: [{ name: "a", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 137, reason: "OOMKilled" } } }] }));
    assert.equal(oom.state, "exited");
    assert.match((oom as { reason: string }).reason, /running out of memory \(OOMKilled/);
    assert.equal((oom as { permanent?: boolean }).permanent, true);
    assert.match((classifyPod(pod({ phase: "Failed", reason: "Evicted", message: "low on memory" })) as { reason: string }).reason, /evicted: low on memory/);
    assert.match((classifyPod(pod({ phase: "Failed", reason: "DeadlineExceeded" })) as { reason: string }).reason, /DeadlineExceeded/);
    const unschedulable = classifyPod(pod({ phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/1 nodes" }] }));
    assert.deepEqual(unschedulable, { state: "pending", detail: "the scheduler cannot place the pod: 0/1 nodes" }, "the cluster may make room: it waits, with the scheduler's message");
    const neverPulled = classifyPod(pod({ phase: "Pending", containerStatuses: [{ name: "a", image: "i", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason: "ErrImageNeverPull", message: 'Container image "x:1" is not present with pull policy of Never' } } }] }));
    assert.deepEqual(neverPulled, { state: "exited", exitCode: null, reason: 'could not start: ErrImageNeverPull: Container image "x:1" is not present with pull policy of Never', permanent: true });
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
