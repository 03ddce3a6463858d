/**
 * Scheduling and provider details on the Kubernetes provider, through the CLI and a real server,
 * against the API emulator (pods run as Docker containers) or, with HODEI_TEST_KUBECONFIG, a real
 * cluster (test/fixtures/kube-cluster.ts):
 * - a job whose pod the scheduler cannot place waits (provisioning, past its registration timeout)
 *   with the scheduler's message as its reason, its node selector and tolerations in the pod spec,
 *   and starts and succeeds once the cluster makes room (an existing node labelled through the API,
 *   the label removed after);
 * - a job tolerates a tainted node added through the API and runs there (the emulator only: a real
 *   cluster's nodes are machines, not API objects a test may add);
 * - HODEI_K8S_PENDING_TIMEOUT ends a job that cannot be placed, with the scheduler's message;
 * - --pull never with a missing image fails at once (ErrImageNeverPull), imagePullPolicy in the pod
 *   (seen by a watch begun before the job: the pod may be gone before `run --detach` returns);
 * - a job over its --memory fails as out of memory.
 * After each test none of this server's pods, pod containers or Secrets is left, and the nodes are
 * as they were (the same names, no label of ours).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { emulatorOnly, ensureWorkerImage, kubernetesServerEnv, ownSelector, skipWithoutCluster, startTestCluster, type TestCluster } from "../fixtures/kube-cluster.js";
import { PodsSeen } from "../fixtures/kube-pods-seen.js";
import { eventually, type JobJson, jobWhen, runCli, type ServerProcess, sleep, startServerProcess, waitDestroyed } from "./harness.js";

const SKIP = skipWithoutCluster("the Kubernetes scheduling end-to-end tests");

const REGISTRATION_TIMEOUT_MS = 5000;
const PENDING_TIMEOUT = "15s";
const POOL_LABEL = "hodei.io/pool";

/** The scheduler's message for a pod whose node selector no node matches (other nodes may fail other filters first, e.g. a control plane's taint). */
const unmatchedSelector = (nodeCount: number) => `0/${nodeCount} nodes are available: (?:.*, )?\\d+ node\\(s\\) didn't match Pod's node affinity/selector\\.`;

/** A node a pod that tolerates only hodei.io/dedicated=jobs:NoSchedule may be placed on once it matches: ready, not cordoned, no other taint that keeps pods off. */
function placeableNode(nodes: k8s.V1Node[]): k8s.V1Node | undefined {
  const isReady = (n: k8s.V1Node) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  const keepsOff = (t: k8s.V1Taint) => (t.effect === "NoSchedule" || t.effect === "NoExecute") && !(t.key === "hodei.io/dedicated" && t.value === "jobs" && t.effect === "NoSchedule");
  return nodes.find((n) => isReady(n) && !n.spec?.unschedulable && !(n.spec?.taints ?? []).some(keepsOff));
}

describe("hodei on the kubernetes provider: scheduling, pulls and memory (emulated, or a real cluster with HODEI_TEST_KUBECONFIG)", { skip: SKIP }, () => {
  const id = randomUUID().slice(0, 8);
  let cluster: TestCluster;
  let core: k8s.CoreV1Api;
  let server: ServerProcess;
  let podsSeen: PodsSeen;
  let NS = "default";
  /** The nodes' names before any test, to prove each test leaves them as they were. */
  let nodesBefore: string[] = [];
  const addedNodes: string[] = [];

  const nodes = async () => (await core.listNode()).items;
  const podsOfJob = async (jobId: string) => (await core.listNamespacedPod({ namespace: NS, labelSelector: `hodei.io/job-id=${jobId}` })).items;
  const podsLeft = async () => (await core.listNamespacedPod({ namespace: NS, labelSelector: ownSelector(server.clusterId) })).items.map((p) => p.metadata?.name);
  const secretsLeft = async () => (await core.listNamespacedSecret({ namespace: NS, labelSelector: ownSelector(server.clusterId) })).items.map((s) => s.metadata?.name);
  const removePoolLabel = (name: string) => core.patchNode({ name, body: [{ op: "remove", path: `/metadata/labels/${POOL_LABEL.replace("/", "~1")}` }] });

  before(async () => {
    await ensureWorkerImage();
    cluster = await startTestCluster({ clusterLabel: `e2e-sched-${id}` });
    NS = cluster.namespace;
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    nodesBefore = (await nodes()).map((n) => n.metadata!.name!).sort();
    server = await startServerProcess({
      HODEI_PROVIDERS: "kubernetes,local",
      HODEI_DEFAULT_PROVIDER: "kubernetes",
      ...kubernetesServerEnv(cluster),
      HODEI_REGISTRATION_TIMEOUT_MS: String(REGISTRATION_TIMEOUT_MS),
      HODEI_K8S_PENDING_TIMEOUT: PENDING_TIMEOUT,
    });
    podsSeen = await PodsSeen.start(cluster.kubeConfig, NS, `hodei.io/cluster-id=${server.clusterId}`);
  });
  afterEach(async () => {
    await eventually(async () => (await podsLeft()).length === 0, 30_000);
    assert.deepEqual(await podsLeft(), [], "no pod is left");
    await eventually(async () => (await cluster.containersLeft()).length === 0, 15_000);
    assert.deepEqual(await cluster.containersLeft(), [], "no pod container is left");
    await eventually(async () => (await secretsLeft()).length === 0, 10_000);
    assert.deepEqual(await secretsLeft(), [], "no Secret is left");
    for (const name of addedNodes.splice(0)) await core.deleteNode({ name });
    const after = await nodes();
    assert.deepEqual(after.map((n) => n.metadata?.name).sort(), nodesBefore, "the nodes that were there, no other");
    assert.deepEqual(after.filter((n) => n.metadata?.labels?.[POOL_LABEL]?.endsWith(id)).map((n) => n.metadata?.name), [], `no node keeps a ${POOL_LABEL} label of ours`);
  });
  after(async () => {
    podsSeen?.stop();
    await server?.stop();
    server?.cleanup();
    await cluster?.stop();
  });

  it("keeps a job that cannot be placed waiting with the scheduler's message, then runs it once a node is labelled to fit", async (t) => {
    const node = placeableNode(await nodes());
    if (!node) return t.skip("no node is ready, schedulable and free of taints that keep pods off: none can be labelled to fit");
    const nodeCount = nodesBefore.length;
    const pool = `p-${id}`;
    const jobId = (
      await runCli(server, ["run", "--detach", "--node-selector", `${POOL_LABEL}=${pool}`, "--toleration", "hodei.io/dedicated=jobs:NoSchedule", "--", "echo placed at last"])
    ).stdout.trim();
    const waiting = await jobWhen(server, jobId, (job) => job.reason.startsWith("waiting:"), 20_000);
    assert.equal(waiting.state, "provisioning");
    assert.match(waiting.reason, new RegExp(`^waiting: the scheduler cannot place the pod: ${unmatchedSelector(nodeCount)}`));
    const [pod] = await podsOfJob(jobId);
    assert.deepEqual(pod.spec?.nodeSelector, { [POOL_LABEL]: pool }, "the job's node selector reaches the pod");
    assert.deepEqual(JSON.parse(JSON.stringify(pod.spec?.tolerations)), [{ key: "hodei.io/dedicated", operator: "Equal", value: "jobs", effect: "NoSchedule" }]);
    const shown = await runCli(server, ["jobs", "get", jobId]);
    assert.match(shown.stdout, /reason\s+waiting: the scheduler cannot place the pod/);
    assert.match(shown.stdout, new RegExp(`node selector\\s+hodei.io/pool=${pool}`));
    assert.match(shown.stdout, /tolerations\s+hodei.io\/dedicated=jobs:NoSchedule/);

    // Past the registration timeout, which counts from the claim (at or before "provisioned"), by a
    // few reconcile passes (500 ms each), and before the pending timeout (15 s from the first
    // "waiting"). Counted from the server's own timestamp, not from when this test saw the reason:
    // on a loaded machine each CLI call takes seconds, and a fixed wait added to them ran into the
    // pending timeout.
    const provisionedMs = Date.parse(waiting.timeline.provisioned);
    await sleep(Math.max(0, provisionedMs + REGISTRATION_TIMEOUT_MS + 2000 - Date.now()));
    const checkedMs = Date.now() - provisionedMs;
    const stillWaiting = await runCli(server, ["jobs", "get", jobId, "--json"]).then((r) => JSON.parse(r.stdout) as JobJson);
    t.diagnostic(`state read ${checkedMs} ms (and one CLI call) after the worker was provisioned; registration timeout ${REGISTRATION_TIMEOUT_MS} ms, pending timeout ${PENDING_TIMEOUT}`);
    assert.equal(stillWaiting.state, "provisioning", "waiting to be scheduled is not a registration failure");
    assert.equal(stillWaiting.attempts, 1);

    // The cluster makes room: an existing node gets the label (a json patch, as kubectl label does
    // it), and gives it back after, whatever happened.
    const name = node.metadata!.name!;
    await core.patchNode({ name, body: [{ op: "add", path: `/metadata/labels/${POOL_LABEL.replace("/", "~1")}`, value: pool }] });
    try {
      const done = await waitDestroyed(server, jobId, 60_000);
      assert.equal(done.state, "succeeded", done.reason);
      assert.equal(done.reason, "");
      assert.equal((await runCli(server, ["logs", jobId])).stdout, "placed at last\n");
    } finally {
      await removePoolLabel(name);
    }
  });

  it("runs a job that tolerates a tainted node added through the API on that node", { skip: emulatorOnly("add a tainted node through the API (a real cluster's nodes are machines)") }, async () => {
    const nodeName = `gpu-${id}`;
    await core.createNode({ body: { metadata: { name: nodeName, labels: { "hodei.io/gpu": "yes" } }, spec: { taints: [{ key: "hodei.io/gpu", value: "yes", effect: "NoSchedule" }] } } });
    addedNodes.push(nodeName);
    const result = await runCli(server, ["run", "--node-selector", "hodei.io/gpu=yes", "--toleration", "hodei.io/gpu=yes:NoSchedule", "--", "echo on $HOSTNAME"]);
    assert.equal(result.code, 0, result.stderr);
    const events = await core.listNamespacedEvent({ namespace: NS, fieldSelector: "reason=Scheduled" });
    const scheduled = events.items.filter((e) => e.message?.endsWith(` to ${nodeName}`));
    assert.equal(scheduled.length, 1, "its pod was bound to the tainted node");
  });

  it("ends a job that cannot be placed at the provider's pending timeout, with the scheduler's message and no retry", async () => {
    const started = Date.now();
    const result = await runCli(server, ["run", "--max-attempts", "3", "--node-selector", `${POOL_LABEL}=nowhere-${id}`, "--", "true"], { timeoutMs: 90_000 });
    assert.equal(result.code, 1);
    const [job] = JSON.parse((await runCli(server, ["jobs", "ls", "--limit", "1", "--json"])).stdout) as JobJson[];
    assert.equal(job.state, "failed");
    assert.equal(job.attempts, 1);
    assert.match(
      job.reason,
      new RegExp(`^the worker could not run within 15s \\(the provider's pending timeout\\): the scheduler cannot place the pod: ${unmatchedSelector(nodesBefore.length)}`),
    );
    assert.ok(Date.now() - started >= 15_000, "not before the timeout");
    await waitDestroyed(server, job.id);
  });

  it("fails a job at once when its image is missing and its pull policy is never (imagePullPolicy Never)", async (t) => {
    const image = `hodei-missing:${id}`;
    const submitted = Date.now();
    const jobId = (await runCli(server, ["run", "--detach", "--max-attempts", "3", "--pull", "never", "--image", image, "--", "true"])).stdout.trim();
    const returnedMs = Date.now() - submitted;
    const job = await waitDestroyed(server, jobId);
    assert.equal(job.state, "failed");
    assert.equal(job.attempts, 1);
    assert.match(job.reason, new RegExp(`could not start: ErrImageNeverPull: Container image "${image}" is not present with pull policy of Never`));
    // The watch saw the pod, however briefly it lived (it is deleted by the time the job is destroyed).
    const isGone = () => podsSeen.ofJob(jobId).every((p) => p.deletedAtMs !== undefined);
    await eventually(isGone, 10_000);
    const [seen, ...more] = podsSeen.ofJob(jobId);
    assert.ok(seen, "the watch saw the job's pod");
    assert.ok(isGone(), "and saw it deleted");
    assert.equal(more.length, 0, "one attempt, one pod");
    assert.equal(seen.pod.spec?.containers[0].imagePullPolicy, "Never");
    const at = (ms: number) => `${ms - submitted} ms`;
    t.diagnostic(`pod created at ${at(seen.addedAtMs)}, deleted at ${at(seen.deletedAtMs!)} after the submit began; run --detach returned at ${returnedMs} ms${seen.deletedAtMs! - submitted < returnedMs ? " (the pod was gone before it returned: a list after it would have found none)" : ""}`);
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
