/**
 * Resource limits and image pulls through the CLI, on a real server:
 * - local: a job over its --memory is killed by the kernel in a cgroup of its own and fails as out
 *   of memory (where this machine lets the server make cgroups: root, a writable memory
 *   controller); one within it succeeds; the log and `jobs get` say how the limit applied; the
 *   cgroup is gone once the worker is;
 * - docker: a job over its --memory fails as out of memory (the agent reads the container's OOM
 *   count: the killed process is the job's, not the container's main one); --image on a registry
 *   that does not answer fails with the pull's error (retried: not the job's fault), and --pull
 *   never with a missing image fails at once without a retry.
 * No worker process, container or cgroup of the cluster is left behind.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { after, afterEach, before, describe, it } from "node:test";
import { docker, hasDocker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { LABELS } from "../../src/providers/docker.js";
import { LocalCgroups } from "../../src/providers/local-cgroup.js";
import { eventually, type JobJson, jsonCli, leftoverProcesses, runCli, type ServerProcess, startServerProcess, waitDestroyed } from "./harness.js";

/** A job that holds 200 MB in memory (busybox has no allocator: tail keeps the whole line); its exit status is tail's. */
const HOG_200MB = "echo allocating; head -c 200m /dev/zero | tail > /dev/null";

interface ResourceJobJson extends JobJson {
  resources?: { cpuMillis?: number; memoryMb?: number };
  resourcesApplied?: string;
  pullPolicy?: string;
}

const probe = new LocalCgroups({ clusterId: `probe-${randomUUID().slice(0, 8)}` });
const cgroupsHere = probe.describe();
probe.removeEmptyBase();
const LOCAL_SKIP = process.getuid?.() === 0 && /memory limits by cgroup/.test(cgroupsHere) ? false : `this machine gives the server no cgroup memory controller (${cgroupsHere}): the local OOM test skipped`;
if (LOCAL_SKIP) console.log(`# ${LOCAL_SKIP}`);

/** The cgroup directories of the cluster's jobs that still exist. */
function jobCgroups(clusterId: string): string[] {
  return ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"].flatMap((root) => {
    const base = `${root}/hodei/${clusterId}`;
    return existsSync(base) ? readdirSync(base, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `${base}/${d.name}`) : [];
  });
}

describe("resource limits and pulls", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServerProcess({ HODEI_PROVIDERS: hasDocker ? "local,docker" : "local", HODEI_DEFAULT_PROVIDER: "local" });
  });
  afterEach(async () => {
    assert.deepEqual(await leftoverProcesses(server), [], "no worker process is left");
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  describe("on local", { skip: LOCAL_SKIP }, () => {
    afterEach(async () => {
      await eventually(() => jobCgroups(server.clusterId).length === 0, 15_000);
      assert.deepEqual(jobCgroups(server.clusterId), [], "no job cgroup is left");
    });

    it("fails a job over its --memory as out of memory, with exit code 137, and says how the limit applied", async () => {
      const result = await runCli(server, ["run", "--memory", "32", "--", HOG_200MB]);
      assert.equal(result.code, 137, result.stderr);
      assert.equal(result.stdout, "allocating\n");
      assert.match(result.stderr, /\[hodei\] resources: memory 32 MiB: enforced by the job's own cgroup \(v[12]\)/, "the job's log says how the limit applies");
      assert.match(result.stderr, /killed for running out of memory: it needed more than its memory limit of 32 MiB/);
      const [listed] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "1"]);
      const job = (await waitDestroyed(server, listed.id)) as ResourceJobJson;
      assert.equal(job.state, "failed");
      assert.equal(job.exitCode, 137);
      assert.equal(job.reason, "the command was killed for running out of memory: it needed more than its memory limit of 32 MiB (the kernel's OOM killer, exit code 137)");
      assert.match(job.resourcesApplied ?? "", /^memory 32 MiB: enforced by the job's own cgroup/);
      const shown = await runCli(server, ["jobs", "get", job.id]);
      assert.match(shown.stdout, /resources\s+memory 32 MiB: enforced by the job's own cgroup/);
    });

    it("runs a job within its limits to success", async () => {
      const result = await runCli(server, ["run", "--memory", "64", "--cpu", "0.5", "--", "head -c 10m /dev/zero | tail | wc -c"]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), String(10 * 1024 * 1024));
      assert.match(result.stderr, /memory 64 MiB: enforced .*; cpu 0\.5: enforced/);
    });
  });

  describe("on docker", { skip: skipWithoutDocker("the Docker resource tests") }, () => {
    async function containersOfCluster() {
      return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${server.clusterId}`] } });
    }
    afterEach(async () => {
      await eventually(async () => (await containersOfCluster()).length === 0, 20_000);
      assert.deepEqual(await containersOfCluster(), [], "no container is left");
    });

    it("fails a job over its --memory as out of memory although only the job's process was killed (the agent reports it)", async () => {
      const result = await runCli(server, ["run", "--provider", "docker", "--memory", "64", "--", HOG_200MB]);
      assert.equal(result.code, 137, result.stderr);
      assert.equal(result.stdout, "allocating\n");
      assert.match(result.stderr, /\[hodei\] resources: container limits: memory 64 MiB/);
      const [listed] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--provider", "docker", "--limit", "1"]);
      const job = await waitDestroyed(server, listed.id);
      assert.equal(job.state, "failed");
      assert.equal(job.exitCode, 137);
      assert.equal(job.reason, "the command was killed for running out of memory: it needed more than its memory limit of 64 MiB (the kernel's OOM killer, exit code 137)");
    });

    it("fails a job as out of memory, at once, when its limit is so small that the kernel kills the agent with it (the container is OOMKilled)", async () => {
      const id = (await runCli(server, ["run", "--provider", "docker", "--detach", "--max-attempts", "3", "--memory", "32", "--", HOG_200MB])).stdout.trim();
      const job = await waitDestroyed(server, id);
      assert.equal(job.state, "failed");
      assert.match(job.reason, /killed for running out of memory/, job.reason);
      assert.equal(job.attempts, 1, "the same job in the same memory would be killed again: no retry");
    });

    it("fails a job whose image's registry does not answer with the pull's error, and retries it (not the job's fault)", async () => {
      const id = (await runCli(server, ["run", "--provider", "docker", "--detach", "--max-attempts", "2", "--image", "127.0.0.1:1/nope:1", "--", "true"])).stdout.trim();
      const job = await waitDestroyed(server, id);
      assert.equal(job.state, "failed");
      assert.equal(job.attempts, 2, "a registry that does not answer may answer later: retried");
      assert.match(job.reason, /^could not start the worker on docker: docker: pull 127\.0\.0\.1:1\/nope:1 failed: .*connection refused/);
    });

    it("fails a job at once, without a retry, when its image is missing and its pull policy is never", async () => {
      const image = `hodei-missing:${randomUUID().slice(0, 8)}`;
      const id = (await runCli(server, ["run", "--provider", "docker", "--detach", "--max-attempts", "3", "--pull", "never", "--image", image, "--", "true"])).stdout.trim();
      const job = (await waitDestroyed(server, id)) as ResourceJobJson;
      assert.equal(job.state, "failed");
      assert.equal(job.attempts, 1);
      assert.equal(job.pullPolicy, "never");
      assert.equal(job.reason, `could not start the worker on docker: image ${image} is not on the Docker host and the job's pull policy is never: pull or build it there first, or submit with --pull if-not-present`);
    });
  });
});
