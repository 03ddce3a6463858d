/**
 * What the bench's sections read of a job: whether it ended, waiting until its worker is destroyed
 * (with the moment it was first seen final, the way `hodei run` sees it), and its timeline's phases.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { createClient } from "@connectrpc/connect";
import { readJobLogs } from "../src/client/logs.js";
import type { Job, JobService } from "../src/gen/hodei/v1/api_pb.js";

export const ENDED = new Set(["succeeded", "failed", "canceled", "timed_out"]);

type Client = ReturnType<typeof createClient<typeof JobService>>;

/**
 * Waits for the job's end the way `hodei run` does, with the client's readJobLogs (its logs followed
 * until the stream's last entry, the job as it ended: it returns only then), and calls onFinal then.
 * Then polls until its worker is destroyed (the timeline is the latest try's: a requeued job may
 * show one destroyed).
 */
export async function waitDestroyed(client: Client, id: string, onFinal: () => void = () => {}): Promise<Job> {
  const entries = readJobLogs(client, id, { follow: true });
  while (!(await entries.next()).done);
  onFinal();
  for (;;) {
    const job = await client.getJob({ id });
    if (ENDED.has(job.state) && job.timeline?.destroyed) return job;
    await new Promise((r) => setTimeout(r, 5));
  }
}

type Moment = "queued" | "provisioned" | "registered" | "started" | "finished" | "destroyed";
const at = (t: Job["timeline"], key: Moment) => {
  const value = t?.[key];
  return value ? timestampMs(value) : NaN;
};

/** The phases of a job's timeline, ms: provision, register, dispatch, run, destroy. */
export function phasesOf(t: Job["timeline"]): Record<"provision" | "register" | "dispatch" | "run" | "destroy", number> {
  return {
    provision: at(t, "provisioned") - at(t, "queued"),
    register: at(t, "registered") - at(t, "provisioned"),
    dispatch: at(t, "started") - at(t, "registered"),
    run: at(t, "finished") - at(t, "started"),
    destroy: at(t, "destroyed") - at(t, "finished"),
  };
}
