/**
 * The provider contract on a real Docker daemon, plus Docker specifics: the full container id as
 * provider_resource_id, labels, limits, a missing image, scoping by cluster id, and the OTP token
 * handed on stdin only (docker inspect of a worker running a real job shows it nowhere; an adopted
 * container that never started gets its assignment; one whose stdin was spent exits by itself).
 * Skips, with a visible reason, when no daemon answers (a laptop); CI always has one.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Duplex } from "node:stream";
import { docker, skipWithoutDocker } from "../../test/fixtures/docker-daemon.js";
import { startWorkerProtocol } from "../../test/fixtures/worker-protocol.js";
import { PermanentError } from "../core/errors.js";
import { DockerProvider, type DockerProviderOptions, LABELS } from "./docker.js";
import { AGENT_COMMAND, assembleAgentRuntime, buildWorkerImage, DEFAULT_WORKER_IMAGE } from "./docker-image.js";
import { describeProvider, eventually, workerSpec } from "./provider.contract.js";

const ROOT = resolve(import.meta.dirname, "../..");
const SKIP = skipWithoutDocker("the Docker provider tests");

const CLUSTER_ID = `test-${randomUUID().slice(0, 8)}`;
const RUNTIME_DIR = resolve(ROOT, ".hodei", "agent-runtime");

async function ourContainers(clusterId = CLUSTER_ID) {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${clusterId}`] } });
}

function makeProvider(clusterId = CLUSTER_ID, defaultImage = DEFAULT_WORKER_IMAGE, extra: Partial<DockerProviderOptions> = {}) {
  return new DockerProvider({
    ...extra,
    clusterId,
    socketPath: "/var/run/docker.sock",
    defaultImage,
    networkMode: "host",
    runtimeDir: RUNTIME_DIR,
    agentEnv: { HODEI_REGISTER_TIMEOUT_MS: "60000" },
    docker,
  });
}

describe("DockerProvider", { skip: SKIP }, () => {
  before(async () => {
    const runtime = await assembleAgentRuntime({ targetDir: RUNTIME_DIR, nodePath: process.execPath, agentPath: resolve(ROOT, "dist", "agent.cjs") });
    await buildWorkerImage(docker, { tag: DEFAULT_WORKER_IMAGE, runtimeDir: runtime.dir });
  });

  after(async () => {
    for (const c of await ourContainers()) await docker.getContainer(c.Id).remove({ force: true });
  });

  describeProvider("docker", async () => ({
    provider: makeProvider(),
    cleanup: async () => {},
    killWorker: async (resource) => {
      await docker.getContainer(resource.resourceId).kill();
    },
    unknownResourceId: "0".repeat(64),
  }));

  describe("docker specifics", () => {
    it("names the worker by its full 64-hex container id, reported before the container starts", async () => {
      const provider = makeProvider();
      let createdState = "";
      const s = workerSpec({
        cpuMillis: 500,
        memoryMb: 128,
        onCreated: async (r) => {
          createdState = (await docker.getContainer(r.resourceId).inspect()).State.Status;
        },
      });
      const resource = await provider.start(s);
      try {
        assert.match(resource.resourceId, /^[0-9a-f]{64}$/);
        assert.equal(createdState, "created", "onCreated runs between create and start");
        const info = await docker.getContainer(resource.resourceId).inspect();
        assert.equal(info.Id, resource.resourceId);
        assert.equal(info.Name, `/${s.name}`);
        assert.equal(info.Config.Labels[LABELS.workerId], s.workerId);
        assert.equal(info.Config.Labels[LABELS.jobId], s.jobId);
        assert.equal(info.Config.Labels[LABELS.attempt], "1");
        assert.equal(info.Config.Labels[LABELS.clusterId], CLUSTER_ID);
        assert.equal(info.HostConfig.NetworkMode, "host");
        assert.equal(info.HostConfig.Memory, 128 * 1024 * 1024);
        assert.equal(info.HostConfig.NanoCpus, 500_000_000);
      } finally {
        await provider.stop(resource.resourceId, 1000);
      }
      assert.deepEqual(await ourContainers(), []);
    });

    it("starts the agent from its startup snapshot in the worker image (built by the image's own node)", async () => {
      const container = await docker.createContainer({
        Image: DEFAULT_WORKER_IMAGE,
        Entrypoint: AGENT_COMMAND,
        Env: ["HODEI_SERVER_URL=http://127.0.0.1:1", "HODEI_AGENT_BOOT_TRACE=1", "HODEI_REGISTER_TIMEOUT_MS=200", "HODEI_OTP_TOKEN=hodei_otp_x", "HODEI_WORKER_ID=w", "HODEI_WORKER_NAME=n", "HODEI_JOB_ID=j"],
        Labels: { [LABELS.managedBy]: "hodei", [LABELS.clusterId]: CLUSTER_ID },
        HostConfig: { NetworkMode: "none" },
      });
      try {
        await container.start();
        assert.equal((await container.wait()).StatusCode, 1, "nothing listens: registration fails");
        const output = (await container.logs({ stdout: true, stderr: true })).toString("utf8");
        const boot = output.split("\n").find((l) => l.includes("boot phases"));
        assert.ok(boot, output);
        assert.match(boot, /"snapshot":1/, `started from the snapshot: ${boot}`);
        assert.match(output, /register with http:\/\/127\.0\.0\.1:1 failed/);
      } finally {
        await container.remove({ force: true });
      }
      assert.deepEqual(await ourContainers(), []);
    });

    it("fails fast and permanently when the image is not on the host and its pull policy is never", async () => {
      const provider = makeProvider();
      const started = Date.now();
      const image = `hodei-no-such-image:${randomUUID().slice(0, 8)}`;
      await assert.rejects(provider.start(workerSpec({ image, pullPolicy: "never" })), (err: Error) => {
        assert.ok(err instanceof PermanentError, `a PermanentError, got ${err.name}`);
        assert.equal(err.message, `image ${image} is not on the Docker host and the job's pull policy is never: pull or build it there first, or submit with --pull if-not-present`);
        return true;
      });
      assert.ok(Date.now() - started < 10_000);
      assert.deepEqual(await ourContainers(), []);
    });

    describe("pull policies", () => {
      /** A tag of the worker image no registry has: present on this host only. */
      const PRESENT = `hodei-test-present:${randomUUID().slice(0, 8)}`;
      /** The daemon's pull calls, seen through a client that counts them. */
      let pulls: string[];
      const counting = new Proxy(docker, {
        get(target, property, receiver) {
          if (property === "pull") return (image: string, ...rest: unknown[]) => (pulls.push(image), (target.pull as (...a: unknown[]) => unknown).call(target, image, ...rest));
          const value = Reflect.get(target, property, receiver);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const provider = () => new DockerProvider({ clusterId: CLUSTER_ID, socketPath: "/var/run/docker.sock", defaultImage: DEFAULT_WORKER_IMAGE, networkMode: "host", runtimeDir: RUNTIME_DIR, agentEnv: {}, docker: counting });

      before(async () => {
        await docker.getImage(DEFAULT_WORKER_IMAGE).tag({ repo: PRESENT.split(":")[0], tag: PRESENT.split(":")[1] });
      });
      after(async () => {
        await docker.getImage(PRESENT).remove({ noprune: true }).catch(() => undefined);
      });

      it("if-not-present: uses an image the host has, with no pull", async () => {
        pulls = [];
        const resource = await provider().start(workerSpec({ image: PRESENT, pullPolicy: "if-not-present" }));
        try {
          assert.equal((await docker.getContainer(resource.resourceId).inspect()).Config.Image, PRESENT);
          assert.deepEqual(pulls, [], "no pull");
        } finally {
          await makeProvider().stop(resource.resourceId, 1000);
        }
      });

      it("always: pulls even an image the host has, and a pull that fails ends the start with the pull's error", async () => {
        pulls = [];
        await assert.rejects(provider().start(workerSpec({ image: PRESENT, pullPolicy: "always" })), (err: Error) => {
          assert.match(err.message, new RegExp(`^docker: pull ${PRESENT} failed: .+`), "the reason names the pull and the error");
          return true;
        });
        assert.deepEqual(pulls, [PRESENT]);
        assert.deepEqual(await ourContainers(), [], "no container was created");
      });

      it("a registry that does not answer: the reason names the pull and the connection error, and a retry may help (not permanent)", async () => {
        pulls = [];
        await assert.rejects(provider().start(workerSpec({ image: "127.0.0.1:1/nope:1" })), (err: Error) => {
          assert.equal(err instanceof PermanentError, false, `retry may help: ${err.name}`);
          assert.match(err.message, /^docker: pull 127\.0\.0\.1:1\/nope:1 failed: .*127\.0\.0\.1:1.*connection refused \(the registry did not answer; the attempt is retried while the job has attempts left\)$/);
          return true;
        });
        assert.deepEqual(pulls, ["127.0.0.1:1/nope:1"], "if-not-present pulls a missing image");
        assert.deepEqual(await ourContainers(), []);
      });

      it("never pulls the default worker image, which is built on the host", async () => {
        pulls = [];
        const resource = await provider().start(workerSpec({ pullPolicy: "always" }));
        await makeProvider().stop(resource.resourceId, 1000);
        assert.deepEqual(pulls, []);
      });
    });

    it("refuses a node selector or tolerations, which only the kubernetes provider can honour", async () => {
      for (const spec of [workerSpec({ nodeSelector: { disktype: "ssd" } }), workerSpec({ tolerations: [{ key: "a", operator: "Exists", value: "", effect: "" }] })]) {
        await assert.rejects(makeProvider().start(spec), (err: Error) => err instanceof PermanentError && /only|kubernetes provider/.test(err.message));
      }
      assert.deepEqual(await ourContainers(), []);
    });

    it("says how the job's limits apply to the container", async () => {
      const provider = makeProvider();
      const resource = await provider.start(workerSpec({ cpuMillis: 250, memoryMb: 64 }));
      await provider.stop(resource.resourceId, 1000);
      assert.equal(resource.resourcesApplied, "container limits: cpu 0.25 (NanoCpus), memory 64 MiB (Memory; swap as much again, Docker's default); enforced by Docker for the whole worker, its agent (about 40 MiB) included");
      assert.equal((await makeProvider().start(workerSpec()).then(async (r) => (await provider.stop(r.resourceId, 1000), r))).resourcesApplied, "", "nothing asked, nothing said");
    });

    it("never lists another cluster's containers", async () => {
      const mine = makeProvider();
      const theirs = makeProvider(`${CLUSTER_ID}-other`);
      const resource = await theirs.start(workerSpec());
      try {
        assert.deepEqual(await mine.list(), []);
        assert.equal((await theirs.list()).length, 1);
      } finally {
        await theirs.stop(resource.resourceId, 1000);
      }
    });

    it("hands the OTP token on stdin only: docker inspect of a worker running a real job shows it nowhere (Env, Cmd, Labels, the whole JSON)", async () => {
      const provider = makeProvider();
      const protocol = await startWorkerProtocol();
      let resourceId = "";
      try {
        const p = await protocol.provision({ recordResource: false, command: ["sh", "-c", "echo ready; env; sleep 60"] });
        const resource = await provider.start({
          ...workerSpec(),
          workerId: p.worker.id,
          name: p.worker.name,
          jobId: p.job.id,
          attempt: p.worker.attempt,
          otpToken: p.otp,
          serverUrl: protocol.url,
          onCreated: async (r) => void (await protocol.store.attempts.recordProvisioned(p.worker.id, r.resourceId, r.resourceType, protocol.clock.nowMs())),
        });
        resourceId = resource.resourceId;
        const output = async () =>
          (await protocol.store.logs.read(p.job.id, { attempt: 0, seq: 0 }, 1000)).map((row) => Buffer.from(row.data).toString()).join("");
        const logs = await eventually(output, (text) => text.includes("ready") && text.includes("PATH="));
        assert.match(logs, /^ready$/m, "the agent registered with the token from stdin and runs the job");
        assert.equal((await protocol.store.workers.get(p.worker.id))?.state, "running");

        const info = await docker.getContainer(resource.resourceId).inspect();
        assert.equal(info.State.Running, true);
        const json = JSON.stringify(info);
        for (const needle of [p.otp, "HODEI_OTP_TOKEN", "hodei_otp_"]) {
          assert.equal(json.includes(needle), false, `docker inspect shows no ${needle === p.otp ? "token value" : needle}`);
        }
        for (const [what, value] of [["Env", info.Config.Env], ["Cmd", info.Config.Cmd], ["Entrypoint", info.Config.Entrypoint], ["Labels", info.Config.Labels], ["Args", info.Args]] as const) {
          assert.equal(JSON.stringify(value ?? null).includes(p.otp), false, `${what} holds no token`);
        }
        assert.ok(info.Config.Env.some((e) => e === `HODEI_SERVER_URL=${protocol.url}`), "non-secret settings stay in Env");
        assert.deepEqual([info.Config.OpenStdin, info.Config.StdinOnce], [true, true]);
        assert.equal(logs.includes(p.otp), false, "the job's environment holds no token either");
        assert.equal((await provider.lastOutput(resource.resourceId)).includes(p.otp), false, "nor the container's output");
      } finally {
        if (resourceId) await provider.stop(resourceId, 1000);
        await protocol.close();
      }
      assert.deepEqual(await ourContainers(), []);
    });

    it("gives an adopted container that never started its assignment, and the agent of one whose stdin was spent exits by itself", async () => {
      const provider = makeProvider();
      /** A start that dies between create and start, as a control plane killed at that line would. */
      const createOnly = async (spec: ReturnType<typeof workerSpec>) => {
        await assert.rejects(provider.start({ ...spec, onCreated: async () => Promise.reject(new Error("died after create")) }), /died after create/);
        const info = await docker.getContainer(spec.name).inspect();
        assert.equal(info.State.Status, "created");
        return info.Id;
      };
      const fresh = workerSpec();
      const spent = workerSpec();
      const ids: string[] = [];
      try {
        ids.push(await createOnly(fresh));
        const adopted = await provider.start(fresh);
        assert.equal(adopted.resourceId, ids[0], "the earlier try's container is adopted");
        const output = await eventually(() => provider.lastOutput(adopted.resourceId), (text) => /cannot register with the control plane/.test(text));
        assert.match(output, /cannot register with the control plane/, "its agent got the assignment and tries to register");

        // An earlier try that attached to stdin and then went away: Docker closed the container's stdin for good.
        ids.push(await createOnly(spent));
        const earlier = (await docker.getContainer(ids[1]).attach({ stream: true, stdin: true, hijack: true })) as Duplex;
        await new Promise<void>((resolve) => earlier.end(() => resolve()));
        earlier.destroy();
        await provider.start(spent);
        const status = await eventually(() => provider.inspect(ids[1]), (s) => s.state === "exited");
        assert.deepEqual(status, { state: "exited", exitCode: 0, reason: "exited with code 0" }, "the agent does not wait forever for an assignment");
        assert.match(await provider.lastOutput(ids[1]), /stdin closed before an assignment arrived/);
      } finally {
        for (const id of ids) await provider.stop(id, 1000);
      }
      assert.deepEqual(await ourContainers(), []);
    });

    describe("destroy", () => {
      /** A container of this cluster running `script` (busybox sh), with an open stdin; started. */
      async function runningContainer(script: string) {
        const container = await docker.createContainer({
          Image: DEFAULT_WORKER_IMAGE,
          Entrypoint: [],
          Cmd: ["sh", "-c", script],
          OpenStdin: true,
          StdinOnce: true,
          Labels: { [LABELS.managedBy]: "hodei", [LABELS.clusterId]: CLUSTER_ID },
          HostConfig: { NetworkMode: "host", Init: true },
        });
        await container.start();
        return container;
      }
      /** The daemon's actions on a container since `sinceS` (kill, die, stop, destroy...), read once the events up to now are in. */
      async function actionsOf(id: string, sinceS: number): Promise<Array<{ action: string; signal?: string }>> {
        const stream = (await docker.getEvents({ since: sinceS, until: Math.ceil(Date.now() / 1000) + 1, filters: { container: [id] } })) as unknown as NodeJS.ReadableStream;
        let text = "";
        for await (const chunk of stream) text += chunk.toString();
        return text
          .split("\n")
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as { Action: string; Actor: { Attributes: Record<string, string> } })
          .map((e) => ({ action: e.Action, signal: e.Actor.Attributes.signal }));
      }

      it("lets a container that stops by itself go without signalling it, then removes it", async () => {
        const provider = makeProvider(CLUSTER_ID, DEFAULT_WORKER_IMAGE, { selfExitWaitMs: 30_000 });
        const sinceS = Math.floor(Date.now() / 1000) - 1;
        // It exits once it reads a line, which it gets while destroy waits: an agent leaving after its result.
        const container = await runningContainer("read line; exit 0");
        const stdin = (await container.attach({ stream: true, stdin: true, hijack: true })) as Duplex;
        const stopping = provider.stop(container.id, 10_000);
        stdin.end("done\n");
        await stopping;
        stdin.destroy();
        await assert.rejects(container.inspect(), (err: { statusCode?: number }) => err.statusCode === 404, "removed");
        const actions = await actionsOf(container.id, sinceS);
        assert.ok(actions.some((a) => a.action === "die"), `it exited: ${JSON.stringify(actions)}`);
        assert.ok(actions.some((a) => a.action === "destroy"), `it was removed: ${JSON.stringify(actions)}`);
        assert.ok(!actions.some((a) => a.action === "kill" || a.action === "stop"), `no signal, no stop: ${JSON.stringify(actions)}`);
      });

      it("stops (SIGTERM) a container that is still running after the wait, then removes it", async () => {
        const provider = makeProvider(CLUSTER_ID, DEFAULT_WORKER_IMAGE, { selfExitWaitMs: 50 });
        const sinceS = Math.floor(Date.now() / 1000) - 1;
        const container = await runningContainer("trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done");
        await provider.stop(container.id, 10_000);
        await assert.rejects(container.inspect(), (err: { statusCode?: number }) => err.statusCode === 404, "removed");
        const actions = await actionsOf(container.id, sinceS);
        assert.deepEqual(
          actions.filter((a) => a.action === "kill").map((a) => a.signal),
          ["15"],
          `one SIGTERM (the stop), no SIGKILL: ${JSON.stringify(actions)}`,
        );
      });
    });

    it("reports the container's last output", async () => {
      const provider = makeProvider();
      const resource = await provider.start(workerSpec());
      try {
        // The agent logs its failed attempts to reach the unreachable server (its idle ping's
        // failure may come first: read until the register attempt's line is there too).
        let output = "";
        for (let i = 0; i < 100 && !/cannot register with the control plane/.test(output); i++) {
          output = await provider.lastOutput(resource.resourceId);
          if (!/cannot register/.test(output)) await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(output, /cannot register with the control plane/);
      } finally {
        await provider.stop(resource.resourceId, 1000);
      }
    });
  });
});
