/**
 * SubmitJob's resources and provider details through the API (an in-process Connect transport over
 * a real store): CPU, memory, pull policy, node selector and tolerations reach the stored job and
 * come back on it, with how the latest attempt's provider applied the limits; bad values are
 * invalid_argument naming the field.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ManualClock } from "../core/clock.js";
import { hashToken, mintOtpToken } from "../core/token.js";
import { JobService } from "../gen/hodei/v1/api_pb.js";
import { Store } from "../store/store.js";
import { claimOne } from "../../test/fixtures/claim.js";
import { startApi } from "../../test/fixtures/api.js";

describe("SubmitJob: resources and provider details", () => {
  let store: Store;
  let clock: ManualClock;
  let client: ReturnType<typeof createClient<typeof JobService>>;
  let close: () => Promise<void>;

  beforeEach(async () => {
    // Only the names matter to SubmitJob's validation.
    const api = await startApi({ providers: ["local", "kubernetes"] });
    ({ store, clock } = api);
    client = (await api.keyWith("admin", ["admin"])).jobs;
    close = api.close;
  });
  afterEach(async () => {
    await close();
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
