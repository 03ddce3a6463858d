/**
 * Job secrets on the Kubernetes provider (the API emulator, pods as Docker containers): the secret
 * reaches the command over the agent's stream only, so neither the pod object, any Secret of the
 * namespace (the pod's own holds its OTP token only) nor the pod's container holds the value or
 * its base64, while the command has it and its log shows ***. Skips without a Docker daemon; no
 * pod, pod container or Secret is left.
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
import { startKubeEmulator } from "../fixtures/kube-emulator/index.js";
import { assembleAgentRuntime, buildWorkerImage, DEFAULT_WORKER_IMAGE } from "../../src/providers/docker-image.js";
import { eventually, ROOT, runCli, type ServerProcess, startServerProcess, waitDestroyed } from "./harness.js";

const SKIP = emulatorOnly("look inside the pod's container on Docker") || skipWithoutDocker("the Kubernetes secrets end-to-end tests (the emulator runs pods on Docker)");

const SECRET = "zebra-7f3c91-quartz";
const NEEDLES = [SECRET, Buffer.from(SECRET).toString("base64"), Buffer.from(SECRET).toString("base64").replace(/=+$/, "")];
const leaks = (text: string) => NEEDLES.filter((needle) => text.includes(needle));

describe("job secrets on the kubernetes provider (emulated)", { skip: SKIP }, () => {
  const label = `e2e-secrets-${randomUUID().slice(0, 8)}`;
  let emulator: Awaited<ReturnType<typeof startKubeEmulator>>;
  let core: k8s.CoreV1Api;
  let server: ServerProcess;

  const podsLeft = async () => (await core.listNamespacedPod({ namespace: "default" })).items.map((p) => p.metadata?.name);
  const containersLeft = () => docker.listContainers({ all: true, filters: { label: [`io.hodei.kube-emulator=${label}`] } });
  const secretsLeft = async () => (await core.listNamespacedSecret({ namespace: "default" })).items.map((s) => s.metadata?.name);

  before(async () => {
    // Pods run the default worker image: make sure it holds the agent just built.
    const runtime = await assembleAgentRuntime({ targetDir: join(ROOT, ".hodei", "agent-runtime"), nodePath: process.execPath, agentPath: join(ROOT, "dist", "agent.cjs") });
    await buildWorkerImage(docker, { tag: DEFAULT_WORKER_IMAGE, runtimeDir: runtime.dir });
    emulator = await startKubeEmulator({ port: 0, docker, clusterLabel: label });
    const kubeconfig = join(mkdtempSync(join(tmpdir(), "hodei-kube-secrets-")), "kubeconfig");
    emulator.writeKubeconfig(kubeconfig);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);
    core = kc.makeApiClient(k8s.CoreV1Api);
    server = await startServerProcess({ HODEI_PROVIDERS: "kubernetes", HODEI_K8S_KUBECONFIG: kubeconfig });
  });
  afterEach(async () => {
    await eventually(async () => (await podsLeft()).length === 0, 30_000);
    assert.deepEqual(await podsLeft(), [], "no pod is left");
    assert.deepEqual(await containersLeft(), [], "no pod container is left");
    await eventually(async () => (await secretsLeft()).length === 0, 10_000);
    assert.deepEqual(await secretsLeft(), [], "no Secret is left");
  });
  after(async () => {
    await server?.stop();
    if (server) assert.deepEqual(leaks(server.output.join("\n")), [], "the server never logged the secret");
    server?.cleanup();
    await emulator?.stop();
  });

  it("keeps the secret out of the pod spec, the namespace's Secrets and the pod's container, while the command has it and its log shows ***", async () => {
    const script = 'echo ready; echo $SECRET; printf %s "$SECRET" | base64; [ "$(printf %s "$SECRET" | wc -c)" -eq 19 ] && echo arrived; sleep 300';
    const submitted = await runCli(server, ["run", "--detach", "--secret", `SECRET=${SECRET}`, "--", script]);
    assert.equal(submitted.code, 0, submitted.stderr);
    const id = submitted.stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("arrived"), 60_000);
    const [pod] = (await core.listNamespacedPod({ namespace: "default", labelSelector: `hodei.io/job-id=${id}` })).items;
    assert.ok(pod, "the job's pod exists");
    assert.deepEqual(leaks(JSON.stringify(pod)), [], "the pod object");
    assert.ok(!(pod.spec?.containers ?? []).some((c) => (c.env ?? []).some((e) => e.name === "SECRET")), "not in the pod's env");
    const secrets = (await core.listNamespacedSecret({ namespace: "default" })).items;
    const decoded = secrets.flatMap((s) => Object.values(s.data ?? {}).map((v) => Buffer.from(v, "base64").toString("latin1")));
    assert.deepEqual(leaks(JSON.stringify(secrets) + decoded.join("\n")), [], "the namespace's Secrets");
    const [container] = await docker.listContainers({ filters: { label: [`io.hodei.kube-emulator=${label}`] } });
    assert.ok(container, "the pod's container runs");
    assert.deepEqual(leaks(JSON.stringify(await docker.getContainer(container.Id).inspect())), [], "docker inspect of the pod's container");
    const podLog = await core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: "default" });
    assert.deepEqual(leaks(podLog), [], "the pod's own log (the agent's lines)");
    const logs = (await runCli(server, ["logs", id])).stdout;
    assert.equal(logs, "ready\n***\n***\narrived\n");
    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    assert.equal((await waitDestroyed(server, id)).state, "canceled");
  });
});
