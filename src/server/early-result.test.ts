/**
 * A job's result is not held back by its worker's destroy: the job is final (and a follower of its
 * log, as `hodei run` is, ends) as soon as the result and the logs are stored; the destroy runs
 * after, and the timeline shows both moments. The provider's stop is held open by the test, and the
 * reconcile pass is run by hand on a manual clock: nothing here waits on time.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { FakeProvider } from "../../test/fixtures/fake-provider.js";
import { chunk, startWorkerProtocol, type WorkerProtocol } from "../../test/fixtures/worker-protocol.js";

describe("the result before the destroy", () => {
  let p: WorkerProtocol;
  afterEach(() => p?.close());

  it("makes the job final and ends its log follow while the worker's stop is still running; destroyed comes after", async () => {
    const provider = new FakeProvider("local");
    let releaseStop = () => {};
    provider.stopGate = new Promise<void>((resolve) => (releaseStop = resolve));
    p = await startWorkerProtocol({ providers: new Map([["local", { provider, maxWorkers: 4, workerServerUrl: "http://127.0.0.1:1" }]]) });
    const r = await p.running({ command: ["echo", "hello"] });
    r.stream.send({ case: "logs", value: { chunks: [chunk(1, "hello\n")] } });
    assert.equal((await r.stream.next()).kind.case, "ack");

    // A follower of the log from before the result, as `hodei run` is.
    const followed = (async () => {
      let text = "";
      for await (const entry of p.api.getLogs({ jobId: r.job.id, follow: true })) text += Buffer.from(entry.data).toString();
      return text;
    })();
    r.stream.send({ case: "result", value: { exitCode: 0, lastSeq: 1n, startedAtMs: 1n, finishedAtMs: 2n } });
    assert.equal((await r.stream.next()).kind.case, "resultAck");
    const finishedAtMs = p.clock.nowMs();

    // The pass starts the destroy, whose stop does not return.
    await p.reconciler.runOnce();
    assert.ok(provider.calls.includes("stop"), "the destroy has started");
    assert.equal(await followed, "hello\n", "the follow ended with every line while the stop still runs");
    const final = await p.api.getJob({ id: r.job.id });
    assert.equal(final.state, "succeeded");
    assert.equal(timestampMs(final.timeline!.finished!), finishedAtMs);
    assert.equal(final.timeline!.destroyed, undefined, "not destroyed yet");
    assert.equal((await p.store.workers.get(r.worker.id))?.state, "destroying");

    p.clock.advance(3000);
    releaseStop();
    await p.reconciler.settle();
    const destroyed = await p.api.getJob({ id: r.job.id });
    assert.equal(destroyed.state, "succeeded");
    assert.equal(timestampMs(destroyed.timeline!.destroyed!) - timestampMs(destroyed.timeline!.finished!), 3000, "destroyed after the result, by the stop's time");
    assert.equal((await p.store.workers.get(r.worker.id))?.state, "destroyed");
  });
});
