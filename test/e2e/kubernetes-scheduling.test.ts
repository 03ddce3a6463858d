/**
 * Scheduling and provider details on the Kubernetes provider, against the API emulator (pods run as
 * Docker containers), through the CLI and a real server:
 * - a job whose pod the scheduler cannot place waits (provisioning, past its registration timeout)
 *   with the scheduler's message as its reason, its node selector and tolerations in the pod spec,
 *   and starts and succeeds once the cluster makes room (a node labelled through the API);
 * - a job tolerates a tainted node added through the API and runs there;
 * - HODEI_K8S_PENDING_TIMEOUT ends a job that cannot be placed, with the scheduler's message;
 * - --pull never with a missing image fails at once (ErrImageNeverPull), imagePullPolicy in the pod;
 * - a job over its --memory fails as out of memory.
 * After each test no pod, pod container or Secret is left, and the emulator's node is as it was.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { emulatorOnly } from "../fixtures/kube-cluster.js";
import { assembleAgentRuntime, buildWorkerImage, DEFAULT_WORKER_IMAGE } from "../../src/providers/docker-image.js";
import { startKubeEmulator } from "../fixtures/kube-emulator/index.js";
import { eventually, type JobJson, jobWhen, ROOT, runCli, type ServerProcess, sleep, startServerProcess, waitDestroyed } from "./harness.js";

const SKIP = emulatorOnly("label the emulator's node, add tainted nodes and run Docker-only checks") || skipWithoutDocker("the Kubernetes scheduling end-to-end tests (the emulator runs pods on Docker)");

const REGISTRATION_TIMEOUT_MS = 5000;
const PENDING_TIMEOUT = "15s";

describe("hodei on the kubernetes provider: scheduling, pulls and memory (emulated)", { skip: SKIP }, () => {
  const id = randomUUID().slice(0, 8);
  const label = `e2e-sched-${id}`;
  let emulator: Awaited<ReturnType<typeof startKubeEmulator>>;
  let core: k8s.CoreV1Api;
  let server: ServerProcess;
  const addedNodes: string[] = [];

  async function podsOfJob(jobId: string) {
    return (await core.listNamespacedPod({ namespace: "default", labelSelector: `hodei.io/job-id=${jobId}` })).items;
  }

  before(async () => {
    const runtime = await assembleAgentRuntime({ targetDir: join(ROOT, ".hodei", "agent-runtime"), nodePath: process.execPath, agentPath: join(ROOT, "dist", "agent.cjs") });
    await buildWorkerImage(docker, { tag: DEFAULT_WORKER_IMAGE, runtimeDir: runtime.dir });
    emulator = await startKubeEmulator({ port: 0, docker, clusterLabel: label });
    const kubeconfig = join(mkdtempSync(join(tmpdir(), "hodei-kube-sched-")), "kubeconfig");
    emulator.writeKubeconfig(kubeconfig);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    core = kc.makeApiClient(k8s.CoreV1Api);
    server = await startServerProcess({
      HODEI_PROVIDERS: "kubernetes,local",
      HODEI_DEFAULT_PROVIDER: "kubernetes",
      HODEI_K8S_KUBECONFIG: kubeconfig,
      HODEI_REGISTRATION_TIMEOUT_MS: String(REGISTRATION_TIMEOUT_MS),
      HODEI_K8S_PENDING_TIMEOUT: PENDING_TIMEOUT,
    });
  });
  afterEach(async () => {
    const pods = async () => (await core.listNamespacedPod({ namespace: "default" })).items;
    await eventually(async () => (await pods()).length === 0, 30_000);
    assert.deepEqual((await pods()).map((p) => p.metadata?.name), [], "no pod is left");
    assert.deepEqual(await docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${label}`] } }), [], "no pod container is left");
    await eventually(async () => (await core.listNamespacedSecret({ namespace: "default" })).items.length === 0, 10_000);
    for (const name of addedNodes.splice(0)) await core.deleteNode({ name });
    const nodes = await core.listNode();
    assert.deepEqual(nodes.items.map((n) => n.metadata?.name), ["emulator"], "only the emulator's own node");
  });
  after(async () => {
    await server?.stop();
    server?.cleanup();
    await emulator?.stop();
  });

  it("keeps a job that cannot be placed waiting with the scheduler's message, then runs it once a node is labelled to fit", async () => {
    const pool = `p-${id}`;
    const jobId = (
      await runCli(server, ["run", "--detach", "--node-selector", `hodei.io/pool=${pool}`, "--toleration", "hodei.io/dedicated=jobs:NoSchedule", "--", "echo placed at last"])
    ).stdout.trim();
    const waiting = await jobWhen(server, jobId, (job) => job.reason.startsWith("waiting:"), 20_000);
    assert.equal(waiting.state, "provisioning");
    assert.equal(
      waiting.reason,
      "waiting: the scheduler cannot place the pod: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
    );
    const [pod] = await podsOfJob(jobId);
    assert.deepEqual(pod.spec?.nodeSelector, { "hodei.io/pool": pool }, "the job's node selector reaches the pod");
    assert.deepEqual(JSON.parse(JSON.stringify(pod.spec?.tolerations)), [{ key: "hodei.io/dedicated", operator: "Equal", value: "jobs", effect: "NoSchedule" }]);
    const shown = await runCli(server, ["jobs", "get", jobId]);
    assert.match(shown.stdout, /reason\s+waiting: the scheduler cannot place the pod/);
    assert.match(shown.stdout, new RegExp(`node selector\\s+hodei.io/pool=${pool}`));
    assert.match(shown.stdout, /tolerations\s+hodei.io\/dedicated=jobs:NoSchedule/);

    await sleep(2 * REGISTRATION_TIMEOUT_MS);
    const stillWaiting = await runCli(server, ["jobs", "get", jobId, "--json"]).then((r) => JSON.parse(r.stdout) as JobJson);
    assert.equal(stillWaiting.state, "provisioning", "waiting to be scheduled is not a registration failure");
    assert.equal(stillWaiting.attempts, 1);

    // The cluster makes room: the node gets the label (a json patch, as kubectl label does it).
    await core.patchNode({ name: "emulator", body: [{ op: "add", path: "/metadata/labels/hodei.io~1pool", value: pool }] });
    try {
      const done = await waitDestroyed(server, jobId, 60_000);
      assert.equal(done.state, "succeeded", done.reason);
      assert.equal(done.reason, "");
      assert.equal((await runCli(server, ["logs", jobId])).stdout, "placed at last\n");
    } finally {
      await core.patchNode({ name: "emulator", body: [{ op: "remove", path: "/metadata/labels/hodei.io~1pool" }] });
    }
  });

  it("runs a job that tolerates a tainted node added through the API on that node", async () => {
    const nodeName = `gpu-${id}`;
    await core.createNode({ body: { metadata: { name: nodeName, labels: { "hodei.io/gpu": "yes" } }, spec: { taints: [{ key: "hodei.io/gpu", value: "yes", effect: "NoSchedule" }] } } });
    addedNodes.push(nodeName);
    const result = await runCli(server, ["run", "--node-selector", "hodei.io/gpu=yes", "--toleration", "hodei.io/gpu=yes:NoSchedule", "--", "echo on $HOSTNAME"]);
    assert.equal(result.code, 0, result.stderr);
    const events = await core.listNamespacedEvent({ namespace: "default", fieldSelector: "reason=Scheduled" });
    const scheduled = events.items.filter((e) => e.message?.endsWith(` to ${nodeName}`));
    assert.equal(scheduled.length, 1, "its pod was bound to the tainted node");
  });

  it("ends a job that cannot be placed at the provider's pending timeout, with the scheduler's message and no retry", async () => {
    const started = Date.now();
    const result = await runCli(server, ["run", "--max-attempts", "3", "--node-selector", `hodei.io/pool=nowhere-${id}`, "--", "true"], { timeoutMs: 90_000 });
    assert.equal(result.code, 1);
    const [job] = JSON.parse((await runCli(server, ["jobs", "ls", "--limit", "1", "--json"])).stdout) as JobJson[];
    assert.equal(job.state, "failed");
    assert.equal(job.attempts, 1);
    assert.match(
      job.reason,
      /^the worker could not run within 15s \(the provider's pending timeout\): the scheduler cannot place the pod: 0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector\./,
    );
    assert.ok(Date.now() - started >= 15_000, "not before the timeout");
    await waitDestroyed(server, job.id);
  });

  it("fails a job at once when its image is missing and its pull policy is never (imagePullPolicy Never)", async () => {
    const image = `hodei-missing:${id}`;
    const jobId = (await runCli(server, ["run", "--detach", "--max-attempts", "3", "--pull", "never", "--image", image, "--", "true"])).stdout.trim();
    const seen = await eventually(async () => (await podsOfJob(jobId))[0], 20_000);
    assert.equal(seen?.spec?.containers[0].imagePullPolicy, "Never");
    const job = await waitDestroyed(server, jobId);
    assert.equal(job.state, "failed");
    assert.equal(job.attempts, 1);
    assert.match(job.reason, new RegExp(`could not start: ErrImageNeverPull: Container image "${image}" is not present with pull policy of Never`));
  });

  it("fails a job over its --memory as out of memory", async () => {
    const result = await runCli(server, ["run", "--max-attempts", "2", "--memory", "64", "--", "echo allocating; head -c 200m /dev/zero | tail > /dev/null"]);
    assert.equal(result.code, 137, result.stderr);
    const [job] = JSON.parse((await runCli(server, ["jobs", "ls", "--limit", "1", "--json"])).stdout) as JobJson[];
    const done = await waitDestroyed(server, job.id);
    assert.equal(done.state, "failed");
    assert.equal(done.attempts, 1, "not retried");
    assert.equal(done.reason, "the command was killed for running out of memory: it needed more than its memory limit of 64 MiB (the kernel's OOM killer, exit code 137)");
    assert.equal(done.exitCode, 137, "the agent outlived the job (its OOM score is the highest) and reported its exit");
  });
});
