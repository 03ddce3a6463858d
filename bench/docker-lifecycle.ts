/**
 * The Docker daemon's own share of a cold Docker worker: what each step of a container's life costs
 * on this daemon, with nothing of Hodei's in it, so that the Docker section's ratio can be read
 * against what no agent can change. Medians of BENCH_RUNS (default 15) of each, in ms:
 *   create                    POST /containers/create of the worker image
 *   start                     POST /start, until the daemon answers (runc has started the process)
 *   exit_to_not_running       a process that ends by itself (`sleep 0.25`, waited on from 240 ms
 *                             after its start): the wait's answer, so the daemon's teardown
 *   remove_exited             DELETE of a container that has exited
 *   remove_running_force      DELETE ?force of a running one (SIGKILL, teardown, removal)
 * and the same start and teardown with the options Hodei's workers use (Init, OpenStdin and
 * StdinOnce), to show that they cost nothing here.
 *
 *   npx tsx bench/docker-lifecycle.ts
 *
 * Every container carries a label of this run and is removed at the end, whatever happened; the
 * bench fails if one is left.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import Dockerode from "dockerode";
import { DEFAULT_WORKER_IMAGE } from "../src/core/worker-image.js";

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const LABEL = "io.hodei.bench-lifecycle";
const RUN_ID = randomUUID();
const docker = new Dockerode({ socketPath: process.env.HODEI_DOCKER_SOCKET ?? "/var/run/docker.sock" });

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)] * 10) / 10;
};

const HODEI_OPTIONS = { AttachStdin: true, OpenStdin: true, StdinOnce: true, HostConfig: { NetworkMode: "host", Init: true } };

function create(cmd: string[], options: Partial<Dockerode.ContainerCreateOptions> = {}) {
  return docker.createContainer({ Image: DEFAULT_WORKER_IMAGE, Entrypoint: [], Cmd: cmd, Labels: { [LABEL]: RUN_ID }, HostConfig: { NetworkMode: "host" }, ...options });
}

async function timed<T>(into: number[], fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const value = await fn();
  into.push(performance.now() - t0);
  return value;
}

/** start, then the teardown of a process that ends by itself 250 ms after its start. */
async function startAndTeardown(options: Partial<Dockerode.ContainerCreateOptions>, start: number[], teardown: number[]): Promise<void> {
  const container = await create(["sh", "-c", "sleep 0.25"], options);
  await timed(start, () => container.start());
  await sleep(240);
  await timed(teardown, () => container.wait({ condition: "not-running" }));
  await container.remove({ force: true, v: true });
}

const newSteps = () => ({ create: [] as number[], start: [] as number[], exit_to_not_running: [] as number[], remove_exited: [] as number[], remove_running_force: [] as number[] });
const newWithOptions = () => ({ start: [] as number[], exit_to_not_running: [] as number[] });

/** One run of every step, its times added to steps and withOptions. */
async function round(steps: ReturnType<typeof newSteps>, withOptions: ReturnType<typeof newWithOptions>): Promise<void> {
  const exited = await create(["/bin/true"]);
  await exited.start();
  await exited.wait();
  await timed(steps.remove_exited, () => exited.remove({ force: true, v: true }));
  const running = await timed(steps.create, () => create(["sleep", "1000"]));
  await running.start();
  await timed(steps.remove_running_force, () => running.remove({ force: true, v: true }));
  await startAndTeardown({}, steps.start, steps.exit_to_not_running);
  await startAndTeardown(HODEI_OPTIONS, withOptions.start, withOptions.exit_to_not_running);
}

const steps = newSteps();
const withHodeiOptions = newWithOptions();
try {
  await docker.getImage(DEFAULT_WORKER_IMAGE).inspect();
  for (let i = 0; i < 2; i++) await round(newSteps(), newWithOptions()); // to warm the daemon, not counted
  for (let i = 0; i < RUNS; i++) await round(steps, withHodeiOptions);
  console.log(
    JSON.stringify(
      {
        runs: RUNS,
        image: DEFAULT_WORKER_IMAGE,
        median_ms: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, median(v)])),
        with_hodei_options_median_ms: Object.fromEntries(Object.entries(withHodeiOptions).map(([k, v]) => [k, median(v)])),
      },
      null,
      2,
    ),
  );
} finally {
  const left = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=${RUN_ID}`] } });
  for (const c of left) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {});
  const after = await docker.listContainers({ all: true, filters: { label: [`${LABEL}=${RUN_ID}`] } });
  if (after.length > 0) {
    console.error(`${after.length} container(s) of this run could not be removed: ${after.map((c) => c.Id.slice(0, 12)).join(", ")}`);
    process.exitCode = 1;
  }
}
