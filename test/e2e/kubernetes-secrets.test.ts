/**
 * Job secrets on the Kubernetes provider, against the API emulator (pods as Docker containers) or,
 * with HODEI_TEST_KUBECONFIG, a real cluster (test/fixtures/kube-cluster.ts): the secret reaches
 * the command over the agent's stream only, so neither the pod object, any Secret of the namespace
 * (the pod's own holds its OTP token only) nor the pod's own log holds the value or its base64,
 * while the command has it and its log shows ***. On the emulator, `docker inspect` of the pod's
 * container shows none of it either (a real cluster's containers are on its nodes, out of reach:
 * skipped there with that reason). None of this server's pods, pod containers or Secrets is left.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { docker } from "../fixtures/docker-daemon.js";
import { emulatorOnly, ensureWorkerImage, kubernetesServerEnv, ownSelector, skipWithoutCluster, startTestCluster, type TestCluster } from "../fixtures/kube-cluster.js";
import { EMULATOR_LABEL } from "../fixtures/kube-emulator/index.js";
import { eventually, runCli, type ServerProcess, startServerProcess, waitDestroyed } from "./harness.js";

const SKIP = skipWithoutCluster("the Kubernetes secrets end-to-end tests");

const SECRET = "zebra-7f3c91-quartz";
const NEEDLES = [SECRET, Buffer.from(SECRET).toString("base64"), Buffer.from(SECRET).toString("base64").replace(/=+$/, "")];
const leaks = (text: string) => NEEDLES.filter((needle) => text.includes(needle));

describe("job secrets on the kubernetes provider (emulated, or a real cluster with HODEI_TEST_KUBECONFIG)", { skip: SKIP }, () => {
  const label = `e2e-secrets-${randomUUID().slice(0, 8)}`;
  let cluster: TestCluster;
  let core: k8s.CoreV1Api;
  let server: ServerProcess;
  let NS = "default";

  const podsLeft = async () => (await core.listNamespacedPod({ namespace: NS, labelSelector: ownSelector(server.clusterId) })).items.map((p) => p.metadata?.name);
  const secretsLeft = async () => (await core.listNamespacedSecret({ namespace: NS, labelSelector: ownSelector(server.clusterId) })).items.map((s) => s.metadata?.name);

  /** Submits a job holding SECRET and waits until its command has it; returns the job id and its pod. */
  async function startSecretJob(): Promise<{ id: string; pod: k8s.V1Pod }> {
    const script = 'echo ready; echo $SECRET; printf %s "$SECRET" | base64; [ "$(printf %s "$SECRET" | wc -c)" -eq 19 ] && echo arrived; sleep 300';
    const submitted = await runCli(server, ["run", "--detach", "--secret", `SECRET=${SECRET}`, "--", script]);
    assert.equal(submitted.code, 0, submitted.stderr);
    const id = submitted.stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("arrived"), 60_000);
    const [pod] = (await core.listNamespacedPod({ namespace: NS, labelSelector: `hodei.io/job-id=${id}` })).items;
    assert.ok(pod, "the job's pod exists");
    return { id, pod };
  }

  async function cancel(id: string): Promise<void> {
    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    assert.equal((await waitDestroyed(server, id)).state, "canceled");
  }

  before(async () => {
    await ensureWorkerImage();
    cluster = await startTestCluster({ clusterLabel: label });
    NS = cluster.namespace;
    core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
    server = await startServerProcess({ HODEI_PROVIDERS: "kubernetes", ...kubernetesServerEnv(cluster) });
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
    if (server) assert.deepEqual(leaks(server.output.join("\n")), [], "the server never logged the secret");
    server?.cleanup();
    await cluster?.stop();
  });

  it("keeps the secret out of the pod spec, the namespace's Secrets and the pod's log, while the command has it and its log shows ***", async () => {
    const { id, pod } = await startSecretJob();
    assert.deepEqual(leaks(JSON.stringify(pod)), [], "the pod object");
    assert.ok(!(pod.spec?.containers ?? []).some((c) => (c.env ?? []).some((e) => e.name === "SECRET")), "not in the pod's env");
    // Every Secret of the namespace, ours or not: the value must be in none.
    const secrets = (await core.listNamespacedSecret({ namespace: NS })).items;
    const decoded = secrets.flatMap((s) => Object.values(s.data ?? {}).map((v) => Buffer.from(v, "base64").toString("latin1")));
    assert.deepEqual(leaks(JSON.stringify(secrets) + decoded.join("\n")), [], "the namespace's Secrets");
    const podLog = await core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: NS });
    assert.deepEqual(leaks(podLog), [], "the pod's own log (the agent's lines)");
    assert.equal((await runCli(server, ["logs", id])).stdout, "ready\n***\n***\narrived\n");
    await cancel(id);
  });

  it("keeps the secret out of the pod's container (docker inspect on the emulator's node)", { skip: emulatorOnly("inspect the pod's container (a real cluster's containers are on its nodes)") }, async () => {
    const { id, pod } = await startSecretJob();
    const [container] = await docker.listContainers({ filters: { label: [`${EMULATOR_LABEL}=${label}`] } });
    assert.ok(container, `the pod's container runs (${pod.metadata?.name})`);
    assert.deepEqual(leaks(JSON.stringify(await docker.getContainer(container.Id).inspect())), [], "docker inspect of the pod's container");
    await cancel(id);
  });
});
