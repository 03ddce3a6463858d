/**
 * The one test suite every provider must pass (local, docker, kubernetes): start / inspect / stop /
 * list against the real thing, no mocks. Every resource a test starts is recorded the moment start
 * returns, stopped after the test whatever happened, and the suite then proves that the provider
 * lists nothing left behind for its cluster. `makeProvider` is called once per test and must give a
 * provider for a cluster id of its own, so that no other test's workers are seen.
 *
 * Workers started here point at a server URL where nothing listens: the agent keeps retrying its
 * registration, which is all the contract needs (a live worker that never gets a job).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, it } from "node:test";
import { workerName } from "../core/ids.js";
import { mintOtpToken } from "../core/token.js";
import type { ProviderResource, WorkerProvider, WorkerSpec, WorkerStatus } from "./provider.js";

export interface ProviderHarness {
  provider: WorkerProvider;
  /** Releases what the harness made around the provider (clients, temp dirs). Workers are already stopped. */
  cleanup(): Promise<void>;
  /** Kills a worker behind the provider's back, as a crash, the OOM killer or an operator would. */
  killWorker(resource: ProviderResource): Promise<void>;
  /** A well-formed provider_resource_id that names nothing (a pid, container id or pod name never used). */
  unknownResourceId: string;
  /** Spec fields this provider needs: the worker image, a server URL its workers can be pointed at. */
  specDefaults?: Partial<Pick<WorkerSpec, "serverUrl" | "image" | "deadlineSeconds">>;
}

/** An address where nothing listens: the agent keeps retrying to register there. */
export const UNREACHABLE_SERVER_URL = "http://127.0.0.1:9";

/** A spec for a fresh worker, as the scheduler makes one, pointed at UNREACHABLE_SERVER_URL. */
export function workerSpec(overrides: Partial<WorkerSpec> = {}): WorkerSpec {
  const workerId = randomUUID();
  return {
    workerId,
    name: workerName(workerId),
    jobId: randomUUID(),
    attempt: 1,
    otpToken: mintOtpToken(),
    serverUrl: UNREACHABLE_SERVER_URL,
    image: "",
    deadlineSeconds: 600,
    cpuMillis: 0,
    memoryMb: 0,
    pullPolicy: "if-not-present",
    nodeSelector: {},
    tolerations: [],
    onCreated: async () => {},
    ...overrides,
  };
}
const STOP_GRACE_MS = 2000;
/** How long a real worker may take to reach a state (a pod is slower than a process). */
const SETTLE_MS = 60_000;

/** Polls `read` until `done` holds or the deadline passes; returns the last value read. */
export async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = SETTLE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const isOver = (s: WorkerStatus) => s.state === "exited" || s.state === "gone";

export function describeProvider(name: string, makeProvider: () => Promise<ProviderHarness>): void {
  describe(`WorkerProvider contract: ${name}`, () => {
    let h: ProviderHarness;
    let provider: WorkerProvider;
    let started: ProviderResource[];

    beforeEach(async () => {
      h = await makeProvider();
      provider = h.provider;
      started = [];
    });

    afterEach(async () => {
      try {
        const failures: string[] = [];
        for (const resource of started) {
          try {
            await provider.stop(resource.resourceId, STOP_GRACE_MS);
          } catch (err) {
            failures.push(`${resource.resourceId}: ${(err as Error).message}`);
          }
        }
        assert.deepEqual(failures, [], "every worker the test started could be stopped");
        assert.deepEqual(await provider.list(), [], "nothing is left behind for this cluster");
      } finally {
        await h.cleanup();
      }
    });

    const freshSpec = (): WorkerSpec => workerSpec(h.specDefaults);

    /** start(), recording the resource for the cleanup before anything else can fail. */
    async function start(spec: WorkerSpec): Promise<ProviderResource> {
      const created: ProviderResource[] = [];
      const resource = await provider.start({ ...spec, onCreated: async (r) => void created.push(r) });
      started.push(resource);
      assert.deepEqual(
        created.map((r) => [r.resourceId, r.resourceType, r.workerId]),
        [[resource.resourceId, resource.resourceType, resource.workerId]],
        "onCreated reported the resource once, before start returned",
      );
      return resource;
    }

    async function startRunning(spec = freshSpec()): Promise<ProviderResource> {
      const resource = await start(spec);
      const status = await eventually(() => provider.inspect(resource.resourceId), (s) => s.state !== "pending");
      assert.deepEqual(status, { state: "running" }, "the worker came up");
      return resource;
    }

    describe("start", () => {
      it("returns the worker's provider_resource_id, the provider's resource type and the worker id", async () => {
        const spec = freshSpec();
        const resource = await start(spec);
        assert.equal(typeof resource.resourceId, "string");
        assert.notEqual(resource.resourceId, "");
        assert.equal(resource.resourceType, provider.resourceType);
        assert.ok(["container_id", "pod_name", "process_id"].includes(resource.resourceType));
        assert.equal(resource.workerId, spec.workerId);
        assert.ok(Number.isFinite(resource.createdAtMs) && resource.createdAtMs > 0);
      });

      it("starts a worker that inspect reports as running", async () => {
        await startRunning();
      });

      it("is idempotent on the name: a repeat returns the same resource and starts nothing new", async () => {
        const spec = freshSpec();
        const first = await startRunning(spec);
        const again = await start(spec);
        assert.equal(again.resourceId, first.resourceId);
        assert.equal(again.workerId, spec.workerId);
        const listed = (await provider.list()).filter((r) => r.workerId === spec.workerId);
        assert.equal(listed.length, 1, "one worker, not two");
      });

      it("starts distinct workers for distinct names", async () => {
        const a = await startRunning();
        const b = await startRunning();
        assert.notEqual(a.resourceId, b.resourceId);
        const listed = (await provider.list()).map((r) => r.resourceId).sort();
        assert.deepEqual(listed, [a.resourceId, b.resourceId].sort());
      });
    });

    describe("list", () => {
      it("contains a started worker, mapped back to its worker id", async () => {
        const spec = freshSpec();
        const resource = await startRunning(spec);
        const listed = (await provider.list()).find((r) => r.resourceId === resource.resourceId);
        assert.ok(listed, "the worker is listed");
        assert.equal(listed.workerId, spec.workerId);
        assert.equal(listed.resourceType, provider.resourceType);
        assert.ok(listed.createdAtMs > 0);
      });

      it("is empty when no worker was started", async () => {
        assert.deepEqual(await provider.list(), []);
      });
    });

    describe("stop", () => {
      it("makes inspect report the worker exited or gone and list no longer contain it", async () => {
        const resource = await startRunning();
        await provider.stop(resource.resourceId, STOP_GRACE_MS);
        const status = await provider.inspect(resource.resourceId);
        assert.ok(isOver(status), `after stop: ${JSON.stringify(status)}`);
        assert.equal((await provider.list()).some((r) => r.resourceId === resource.resourceId), false);
      });

      it("stops only the worker it is given", async () => {
        const victim = await startRunning();
        const bystander = await startRunning();
        await provider.stop(victim.resourceId, STOP_GRACE_MS);
        assert.deepEqual(await provider.inspect(bystander.resourceId), { state: "running" });
        assert.deepEqual((await provider.list()).map((r) => r.resourceId), [bystander.resourceId]);
      });

      it("succeeds on a worker that is already stopped", async () => {
        const resource = await startRunning();
        await provider.stop(resource.resourceId, STOP_GRACE_MS);
        await provider.stop(resource.resourceId, STOP_GRACE_MS);
        assert.ok(isOver(await provider.inspect(resource.resourceId)));
      });

      it("succeeds on a resource that never existed, which inspect reports as gone", async () => {
        await provider.stop(h.unknownResourceId, STOP_GRACE_MS);
        assert.deepEqual(await provider.inspect(h.unknownResourceId), { state: "gone" });
      });
    });

    describe("inspect", () => {
      it("reports a worker killed from outside as exited or gone", async () => {
        const resource = await startRunning();
        await h.killWorker(resource);
        const status = await eventually(() => provider.inspect(resource.resourceId), isOver);
        assert.ok(isOver(status), `after the kill: ${JSON.stringify(status)}`);
      });
    });
  });
}
