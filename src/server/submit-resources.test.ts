/**
 * SubmitJob's resources and provider details through the API (an in-process Connect transport over
 * a real store): CPU, memory, pull policy, node selector and tolerations reach the stored job and
 * come back on it, with how the latest attempt's provider applied the limits; bad values are
 * invalid_argument naming the field.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import pino from "pino";
import { ManualClock } from "../core/clock.js";
import { hashToken, mintApiKey, mintOtpToken } from "../core/token.js";
import { JobService } from "../gen/hodei/v1/api_pb.js";
import { createMetrics } from "../metrics.js";
import { type ProviderSlot, Reconciler } from "../scheduler/reconciler.js";
import { openDatabase } from "../store/database.js";
import { Store } from "../store/store.js";
import { authInterceptor } from "./authentication.js";
import { errorInterceptor } from "./error-interceptor.js";
import { createJobService } from "./job-service.js";
import { LogHub } from "./log-hub.js";
import { SessionRegistry } from "./worker-service.js";
import { randomBytes } from "node:crypto";
import { SecretBox } from "../core/secret-box.js";
import { claimOne } from "../../test/fixtures/claim.js";

describe("SubmitJob: resources and provider details", () => {
  let store: Store;
  let clock: ManualClock;
  let client: ReturnType<typeof createClient<typeof JobService>>;

  beforeEach(async () => {
    const log = pino({ level: "silent" });
    const { db, kind } = await openDatabase("sqlite::memory:");
    store = new Store(db, kind);
    clock = new ManualClock();
    const providers = new Map<string, ProviderSlot>();
    const common = { store, clock, log, metrics: createMetrics(), logHub: new LogHub(), sessions: new SessionRegistry(), stopGraceMs: 1000, secretBox: new SecretBox(randomBytes(32)) };
    const reconciler = new Reconciler({ ...common, providers, registrationTimeoutMs: 1000, heartbeatTimeoutMs: 1000, reconcileIntervalMs: 1000, orphanGraceMs: 0, agents: common.sessions });
    // Only the names matter to SubmitJob's validation.
    for (const name of ["local", "kubernetes"]) providers.set(name, { provider: undefined as never, maxWorkers: 1, workerServerUrl: "" });
    const service = createJobService({ ...common, reconciler, providers, defaultProvider: "local", defaultTimeoutSeconds: 60, workerUrlWarning: () => "" });
    const key = mintApiKey();
    await store.keys.insert({ name: "admin", keyHash: hashToken(key), scopes: ["admin"] }, clock.nowMs());
    const sendKey: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${key}`);
      return next(req);
    };
    const interceptors = [errorInterceptor(log), authInterceptor({ store, clock, log, isRequired: true })];
    client = createClient(JobService, createRouterTransport((router) => router.service(JobService, service), { router: { interceptors }, transport: { interceptors: [sendKey] } }));
  });
  afterEach(async () => {
    await store.close();
  });

  it("stores them as given, defaults the pull policy, and shows how the latest attempt applied the limits", async () => {
    const { job } = await client.submitJob({
      command: ["true"],
      provider: "kubernetes",
      resources: { cpuMillis: 500, memoryMb: 256 },
      pullPolicy: "always",
      nodeSelector: { disktype: "ssd" },
      tolerations: [{ key: "spot", operator: "Exists", effect: "NoExecute", tolerationSeconds: 30n }, { key: "dedicated", value: "hodei" }],
    });
    assert.ok(job);
    assert.deepEqual([job.resources?.cpuMillis, job.resources?.memoryMb, job.pullPolicy], [500, 256, "always"]);
    assert.deepEqual(job.nodeSelector, { disktype: "ssd" });
    assert.deepEqual(
      job.tolerations.map((t) => [t.key, t.operator, t.value, t.effect, t.tolerationSeconds]),
      [
        ["spot", "Exists", "", "NoExecute", 30n],
        ["dedicated", "Equal", "hodei", "", undefined],
      ],
    );
    assert.equal(job.resourcesApplied, "", "no worker yet");
    assert.equal((await client.submitJob({ command: ["true"] })).job?.pullPolicy, "if-not-present");

    const claimed = await claimOne(store, "kubernetes", clock.nowMs(), (row) => ({
      worker: { id: "w1", name: "hodei-worker-w1", jobId: row.id, attempt: row.attempts, provider: row.provider, registrationDeadlineMs: clock.nowMs() + 1000 },
      token: { id: "t1", tokenHash: hashToken(mintOtpToken()), expiresAtMs: clock.nowMs() + 1000 },
    }));
    assert.equal(claimed?.job.id, job.id);
    await store.attempts.recordProvisioned("w1", "hodei-worker-w1", "pod_name", clock.nowMs(), "limits of the pod's container: cpu 500m, memory 256Mi");
    assert.equal((await client.getJob({ id: job.id })).resourcesApplied, "limits of the pod's container: cpu 500m, memory 256Mi");
  });

  it("refuses a pull policy, node selector or toleration Kubernetes would refuse, naming the field", async () => {
    const refused = async (fields: Parameters<typeof client.submitJob>[0], field: string) => {
      const err = await client.submitJob({ command: ["true"], ...fields }).then(
        () => assert.fail("refused"),
        (e: unknown) => ConnectError.from(e),
      );
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.rawMessage, new RegExp(`^${field}: `));
    };
    await refused({ pullPolicy: "sometimes" }, "pullPolicy");
    await refused({ nodeSelector: { "bad key": "x" } }, "nodeSelector");
    await refused({ tolerations: [{ key: "", operator: "Equal" }] }, "tolerations");
    await refused({ tolerations: [{ key: "a", effect: "NoSchedule", tolerationSeconds: 5n }] }, "tolerations");
  });
});
