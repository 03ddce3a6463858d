/**
 * The whole system with the Kubernetes provider, against the API emulator (pods run as real Docker
 * containers): the seed's jobs, failures reported fast with their reason (a missing image, the seed's
 * DNS failure), `hodei doctor` catching that failure beforehand, `hodei verify` on all three
 * providers, and the OTP token kept out of pods: in a Secret of the pod's own that stays while the
 * agent waits to register, is deleted once it registered, and is reaped when nothing owns it.
 * After each test no pod, no pod container and no Secret is left.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { docker } from "../fixtures/docker-daemon.js";
import { emulatorOnly, ensureWorkerImage, kubernetesServerEnv, ownSelector, REAL_CLUSTER_KUBECONFIG, skipWithoutCluster, startTestCluster, type TestCluster } from "../fixtures/kube-cluster.js";
import { startKubeEmulator } from "../fixtures/kube-emulator/index.js";
import { eventually, type JobJson, jsonCli, runCli, type ServerProcess, sleep, startServerProcess, type TokenJson, waitDestroyed } from "./harness.js";
import { tempDir } from "../fixtures/temp-dir.js";

const SKIP = skipWithoutCluster("the Kubernetes end-to-end tests");
/** Suites that start emulators of their own. */
const EMULATOR_ONLY = SKIP || emulatorOnly("start an emulator of its own");

describe("hodei on the kubernetes provider (emulated, or a real cluster with HODEI_TEST_KUBECONFIG)", { skip: SKIP }, () => {
  const label = `e2e-${randomUUID().slice(0, 8)}`;
  let cluster: TestCluster;
  let core: k8s.CoreV1Api;
  let server: ServerProcess;
  let NS = "default";

  // On a real cluster only this run's pods and Secrets count (others may share the namespace).
  async function podsLeft() {
    return (await core.listNamespacedPod({ namespace: NS, labelSelector: ownSelector(server.clusterId) })).items.map((p) => p.metadata?.name);
  }
  async function secretsLeft() {
    return (await core.listNamespacedSecret({ namespace: NS, labelSelector: ownSelector(server.clusterId) })).items.map((s) => s.metadata?.name);
  }
  before(async () => {
    await ensureWorkerImage();
    cluster = await startTestCluster({ clusterLabel: label });
    NS = cluster.namespace;
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    // On a real cluster, pods must reach this machine: HODEI_TEST_WORKER_SERVER_URL (README).
    server = await startServerProcess({ HODEI_PROVIDERS: REAL_CLUSTER_KUBECONFIG ? "kubernetes,local" : "kubernetes,local,docker", ...kubernetesServerEnv(cluster) });
  });
  afterEach(async () => {
    await eventually(async () => (await podsLeft()).length === 0, 30_000);
    assert.deepEqual(await podsLeft(), [], "no pod is left");
    await eventually(async () => (await cluster.containersLeft()).length === 0, 15_000);
    assert.deepEqual(await cluster.containersLeft(), [], "no pod container is left");
    await eventually(async () => (await secretsLeft()).length === 0, 10_000);
    assert.deepEqual(await secretsLeft(), [], "no Secret is left");
  });
  after(async () => {
    await server?.stop();
    server?.cleanup();
    await cluster?.stop();
  });

  it("runs hello world, a data pipeline and a CPU-bound loop, with pod-name tokens consumed", async () => {
    const hello = await runCli(server, ["run", "--provider", "kubernetes", "--", "echo", "hello from a pod"]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(hello.stdout, "hello from a pod\n");
    const data = await runCli(server, ["run", "--provider", "kubernetes", "--", "seq 1 100000 | grep 7 | sort -r | uniq | wc -l | tr -d ' '"]);
    assert.equal(data.stdout.trim(), "40951");
    const cpu = await runCli(server, ["run", "--provider", "kubernetes", "--", "i=0; n=0; while [ $i -lt 50000 ]; do n=$(( (n + i * i) % 1000003 )); i=$((i+1)); done; echo $n"]);
    assert.equal(cpu.code, 0, cpu.stderr);
    const jobs = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--provider", "kubernetes", "--limit", "3"]);
    for (const job of jobs) await waitDestroyed(server, job.id);
    const tokens = (await jsonCli<TokenJson[]>(server, ["tokens"])).filter((t) => jobs.some((j) => j.id === t.jobId));
    assert.equal(tokens.length, 3);
    for (const token of tokens) {
      assert.equal(token.resourceType, "pod_name");
      assert.match(token.providerResourceId, /^hodei-worker-[0-9a-f-]{36}$/);
      assert.equal(token.consumed, true);
    }
  });

  it("keeps the OTP token out of the pod spec and deletes the pod's token Secret once its agent registered, while the job runs", async () => {
    const id = (await runCli(server, ["run", "--provider", "kubernetes", "--detach", "--", "echo ready; sleep 300"])).stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("ready"), 30_000);
    const [pod] = (await core.listNamespacedPod({ namespace: NS, labelSelector: `hodei.io/job-id=${id}` })).items;
    assert.ok(pod, "the job's pod exists");
    assert.doesNotMatch(JSON.stringify(pod), /hodei_otp_/, "no token value in the pod");
    const tokenVar = pod.spec?.containers[0].env?.find((e) => e.name === "HODEI_OTP_TOKEN");
    assert.equal(tokenVar?.value, undefined);
    assert.equal(tokenVar?.valueFrom?.secretKeyRef?.name, `${pod.metadata?.name}-otp`);
    const ofJob = async () => (await core.listNamespacedSecret({ namespace: NS, labelSelector: `hodei.io/job-id=${id}` })).items;
    assert.deepEqual(await eventually(async () => (await ofJob()).length === 0 && (await ofJob()), 10_000), [], "its Secret is deleted once the token is spent");
    assert.equal((await core.readNamespacedPod({ name: pod.metadata!.name!, namespace: NS })).status?.phase, "Running", "while the job still runs");
    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    assert.equal((await waitDestroyed(server, id)).state, "canceled");
  });

  it("reaps a token Secret of this cluster that nothing owns once past the orphan grace, and leaves another cluster's alone", async () => {
    const secret = (name: string, clusterId: string): k8s.V1Secret => ({
      metadata: { name, labels: { "app.kubernetes.io/managed-by": "hodei", "hodei.io/cluster-id": clusterId, "hodei.io/worker-id": randomUUID() } },
      stringData: { "otp-token": "hodei_otp_left-behind" },
    });
    const ours = `hodei-worker-${randomUUID()}-otp`;
    const theirs = `hodei-worker-${randomUUID()}-otp`;
    await core.createNamespacedSecret({ namespace: NS, body: secret(ours, server.clusterId) });
    await core.createNamespacedSecret({ namespace: NS, body: secret(theirs, `${server.clusterId}-other`) });
    try {
      const started = Date.now();
      await eventually(async () => !(await secretsLeft()).includes(ours), 20_000);
      assert.equal((await secretsLeft()).includes(ours), false, "reaped");
      assert.ok(Date.now() - started >= 1000, "not before its grace");
      assert.ok(await core.readNamespacedSecret({ name: theirs, namespace: NS }).then(() => true, () => false), "another cluster's Secret stays");
    } finally {
      await core.deleteNamespacedSecret({ name: theirs, namespace: NS }).catch(() => undefined);
      await core.deleteNamespacedSecret({ name: ours, namespace: NS }).catch(() => undefined);
    }
  });

  it("fails a job that exits 42 with exit code 42", async () => {
    const result = await runCli(server, ["run", "--provider", "kubernetes", "--", "exit 42"]);
    assert.equal(result.code, 42);
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--provider", "kubernetes", "--limit", "1"]);
    assert.equal(job.state, "failed");
    assert.equal(job.exitCode, 42);
    await waitDestroyed(server, job.id);
  });

  it("cancels a running job and deletes its pod", async () => {
    const id = (await runCli(server, ["run", "--provider", "kubernetes", "--detach", "--", "echo ready; sleep 300"])).stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("ready"), 30_000);
    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    assert.equal((await waitDestroyed(server, id)).state, "canceled");
  });

  it("fails a missing image within seconds with ImagePullBackOff in the reason, the pod's events in the log", async () => {
    const started = Date.now();
    const id = (await runCli(server, ["run", "--provider", "kubernetes", "--max-attempts", "3", "--image", "hodei-no-such-image:7", "--detach", "--", "true"])).stdout.trim();
    const job = await waitDestroyed(server, id);
    assert.equal(job.state, "failed");
    assert.match(job.reason, /ImagePullBackOff|ErrImagePull/);
    assert.equal(job.attempts, 1, "an image pull failure is not retried");
    assert.ok(Date.now() - started < 20_000, `failed within seconds (${Date.now() - started} ms)`);
    const logs = await runCli(server, ["logs", id]);
    assert.match(logs.stdout + logs.stderr, /Failed|BackOff/, "the pod's events are copied into the job's log");
  });

  it("runs 10 concurrent jobs", async () => {
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => runCli(server, ["run", "--provider", "kubernetes", "--", `echo pod-${i}`], { timeoutMs: 120_000 })));
    results.forEach((r, i) => {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `pod-${i}\n`);
    });
  });

  it("passes hodei verify on local, docker and kubernetes at once", { skip: emulatorOnly("run Docker jobs beside the pods (verify uses all three providers)") }, async () => {
    const result = await runCli(server, ["verify", "--json"], { timeoutMs: 180_000 });
    const report = JSON.parse(result.stdout) as { ok: boolean; jobs: { provider: string; state: string }[]; tokens: TokenJson[]; orphans: Record<string, number> };
    assert.equal(report.ok, true, result.stdout + result.stderr);
    assert.equal(result.code, 0);
    assert.deepEqual([...new Set(report.jobs.map((j) => j.provider))].sort(), ["docker", "kubernetes", "local"]);
    assert.equal(report.jobs.length, 9);
    const types: Record<string, string> = { local: "process_id", docker: "container_id", kubernetes: "pod_name" };
    for (const token of report.tokens) {
      assert.equal(token.consumed, true);
      assert.equal(token.resourceType, types[token.provider]);
    }
    assert.deepEqual(report.orphans, { local: 0, docker: 0, kubernetes: 0 });
  });
});

describe("a pod whose agent cannot register yet", { skip: EMULATOR_ONLY }, () => {
  it("keeps its token Secret, owned by the pod, through reconcile passes past the orphan grace; the Secret goes with the pod", async () => {
    const label = `wait-${randomUUID().slice(0, 8)}`;
    await ensureWorkerImage();
    const emulator = await startKubeEmulator({ port: 0, docker, clusterLabel: label });
    const kubeconfig = join(tempDir("hodei-kube-wait-"), "kubeconfig");
    emulator.writeKubeconfig(kubeconfig);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    let server: ServerProcess | undefined;
    try {
      server = await startServerProcess({
        HODEI_PROVIDERS: "kubernetes",
        HODEI_K8S_KUBECONFIG: kubeconfig,
        HODEI_K8S_WORKER_SERVER_URL: "http://127.0.0.1:9",
        HODEI_REGISTRATION_TIMEOUT_MS: "60000",
      });
      const id = (await runCli(server, ["run", "--detach", "--", "echo never"])).stdout.trim();
      const pod = (await eventually(async () => (await core.listNamespacedPod({ namespace: "default", labelSelector: `hodei.io/job-id=${id}` })).items[0], 30_000))!;
      assert.ok(pod, "the job's pod exists");
      const name = pod.metadata!.name!;
      await eventually(async () => /cannot register with the control plane/.test(await core.readNamespacedPodLog({ name, namespace: "default" }).catch(() => "")), 30_000);
      await sleep(3000); // the orphan grace (2 s) and several reconcile passes (500 ms)
      const secret = await core.readNamespacedSecret({ name: `${name}-otp`, namespace: "default" });
      assert.match(Buffer.from(secret.data?.["otp-token"] ?? "", "base64").toString(), /^hodei_otp_/);
      assert.deepEqual(
        secret.metadata?.ownerReferences?.map((r) => [r.kind, r.name, r.uid]),
        [["Pod", name, pod.metadata?.uid]],
      );
      assert.doesNotMatch(JSON.stringify(await core.readNamespacedPod({ name, namespace: "default" })), /hodei_otp_/);
      const [token] = await jsonCli<TokenJson[]>(server, ["tokens"]);
      assert.equal(token.consumed, false);

      assert.equal((await runCli(server, ["cancel", id])).code, 0);
      assert.equal((await waitDestroyed(server, id)).state, "canceled");
      await eventually(async () => (await core.listNamespacedSecret({ namespace: "default" })).items.length === 0, 10_000);
      assert.deepEqual((await core.listNamespacedSecret({ namespace: "default" })).items, [], "the Secret went with its pod");
      assert.deepEqual((await core.listNamespacedPod({ namespace: "default" })).items, []);
    } finally {
      await server?.stop();
      server?.cleanup();
      await emulator.stop();
    }
    assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${label}`] } }), []);
  });
});

describe("the seed's DNS failure: pods given host.docker.internal", { skip: EMULATOR_ONLY }, () => {
  it("is caught by hodei doctor beforehand, and fails a job fast with the reason, its token unconsumed, its pod deleted", async () => {
    const label = `dns-${randomUUID().slice(0, 8)}`;
    await ensureWorkerImage();
    const emulator = await startKubeEmulator({ port: 0, docker, clusterLabel: label });
    const kubeconfig = join(tempDir("hodei-kube-dns-"), "kubeconfig");
    emulator.writeKubeconfig(kubeconfig);
    let server: ServerProcess | undefined;
    try {
      server = await startServerProcess({
        HODEI_PROVIDERS: "kubernetes",
        HODEI_K8S_KUBECONFIG: kubeconfig,
        HODEI_HOST: "0.0.0.0",
        HODEI_K8S_WORKER_SERVER_URL: "http://host.docker.internal:7070",
      });
      const doctor = await runCli(server, ["doctor"], { timeoutMs: 90_000 });
      assert.equal(doctor.code, 1);
      assert.match(doctor.stdout + doctor.stderr, /pods cannot resolve host\.docker\.internal; set HODEI_K8S_WORKER_SERVER_URL/);

      const started = Date.now();
      const id = (await runCli(server, ["run", "--detach", "--", "echo never"])).stdout.trim();
      const job = (await eventually(async () => {
        const j = await jsonCli<JobJson>(server!, ["jobs", "get", id]);
        return j.timeline.destroyed ? j : null;
      }, 60_000)) as JobJson;
      assert.equal(job.state, "failed");
      assert.match(job.reason, /ENOTFOUND|resolve/);
      assert.match(job.reason, /host\.docker\.internal/);
      assert.ok(Date.now() - started < 30_000, `reported within seconds (${Date.now() - started} ms)`);
      const token = (await jsonCli<TokenJson[]>(server, ["tokens"])).find((t) => t.jobId === id);
      assert.equal(token?.consumed, false);
      assert.equal(token?.expired, true);
      assert.match(token?.providerResourceId ?? "", /^hodei-worker-/);
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(kubeconfig);
      const pods = await kc.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace: "default" });
      assert.deepEqual(pods.items, []);
    } finally {
      await server?.stop();
      server?.cleanup();
      await emulator.stop();
    }
    assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${label}`] } }), []);
  });
});
