/**
 * Whether the kernel's OOM killer ended a container. Docker latches State.OOMKilled when it handles
 * containerd's OOM event for the container, and copies it into the exit when it handles the exit
 * event. The two events come apart: when the exit is handled first, the container is recorded as
 * exited with code 137 and OOMKilled false, for good. The daemon still logs an "oom" event for it.
 * So a container that died by SIGKILL (137) under a memory limit without OOMKilled is looked up in
 * the daemon's event log, from its start to a second after its exit (the daemon answers at once
 * with what it has, and waits for what may still come until then). Without the limit, or killed by
 * someone's `docker kill`, there is no such event: the exit is what it says.
 */
import type Dockerode from "dockerode";

/** The most of the event stream read: a few oom events are a few hundred bytes each. */
const MAX_EVENT_BYTES = 64 * 1024;

export async function wasOomKilled(docker: Dockerode, info: Dockerode.ContainerInspectInfo, signal?: AbortSignal): Promise<boolean> {
  const state = info.State;
  if (state.OOMKilled) return true;
  if (state.ExitCode !== 137 || !((info.HostConfig?.Memory ?? 0) > 0)) return false;
  const startedMs = Date.parse(state.StartedAt);
  const finishedMs = Date.parse(state.FinishedAt);
  if (!Number.isFinite(startedMs) || !Number.isFinite(finishedMs)) return false;
  const stream = (await docker.getEvents({
    since: Math.floor(startedMs / 1000),
    until: Math.ceil(finishedMs / 1000) + 1,
    filters: { container: [info.Id], event: ["oom"] },
    abortSignal: signal,
  } as Dockerode.GetEventsOptions)) as NodeJS.ReadableStream & { destroy?: () => void };
  let text = "";
  try {
    for await (const chunk of stream) {
      text += String(chunk);
      if (text.includes('"Action":"oom"')) return true;
      if (text.length > MAX_EVENT_BYTES) return false;
    }
    return false;
  } finally {
    stream.destroy?.();
  }
}
