/**
 * The whole system through the CLI with --provider docker: a real server, a real Docker daemon,
 * containers from the offline worker image. After every test, each Docker token is consumed and
 * carries the 64-hex id of a container that really was created, and no container of the cluster
 * remains. Skips with a visible message when no daemon answers (a laptop); CI always has one.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { docker, skipWithoutDocker } from "../fixtures/docker-daemon.js";
import { LABELS } from "../../src/providers/docker.js";
import { busyboxRootfs, importRootfs } from "../../src/providers/docker-image.js";
import { eventually, type JobJson, jsonCli, runCli, type ServerProcess, startServerProcess, type TokenJson, waitDestroyed } from "./harness.js";
import { tempDir } from "../fixtures/temp-dir.js";

const SKIP = skipWithoutDocker("the Docker end-to-end tests");


const BUSYBOX_ONLY = `hodei-test-busybox:${randomUUID().slice(0, 8)}`;

describe("hodei on the docker provider", { skip: SKIP }, () => {
  let server: ServerProcess;
  const created = new Set<string>();
  let events: NodeJS.ReadableStream | undefined;

  async function containersOfCluster(clusterId: string) {
    return docker.listContainers({ all: true, filters: { label: [`${LABELS.managedBy}=hodei`, `${LABELS.clusterId}=${clusterId}`] } });
  }

  /** Every Docker token is consumed and names a container that was really created. */
  async function assertTokensAndNoContainers(srv: ServerProcess, expectConsumed = true): Promise<void> {
    const tokens = (await jsonCli<TokenJson[]>(srv, ["tokens", "--limit", "1000"])).filter((t) => t.provider === "docker");
    for (const token of tokens) {
      if (token.providerResourceId === "") {
        // The container was never created (a missing image): its token was never usable.
        assert.equal(token.consumed, false);
        continue;
      }
      assert.equal(token.resourceType, "container_id");
      assert.match(token.providerResourceId, /^[0-9a-f]{64}$/);
      assert.ok(created.has(token.providerResourceId), `token of job ${token.jobId} names container ${token.providerResourceId}, which was created`);
      if (expectConsumed) assert.equal(token.consumed, true, `token of job ${token.jobId} consumed`);
    }
    await eventually(async () => (await containersOfCluster(srv.clusterId)).length === 0, 20_000);
    assert.deepEqual(await containersOfCluster(srv.clusterId), [], "no container of the cluster remains");
  }

  before(async () => {
    server = await startServerProcess({ HODEI_PROVIDERS: "local,docker", HODEI_DEFAULT_PROVIDER: "local" });
    events = (await docker.getEvents({ filters: { type: ["container"], event: ["create"], label: [`${LABELS.clusterId}=${server.clusterId}`] } })) as unknown as NodeJS.ReadableStream;
    events.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n").filter(Boolean)) created.add(JSON.parse(line).id as string);
    });
    await importRootfs(docker, { tag: BUSYBOX_ONLY, entries: await busyboxRootfs("/bin/busybox"), changes: [] });
  });
  afterEach(async () => {
    await assertTokensAndNoContainers(server);
  });
  after(async () => {
    (events as unknown as { destroy?: () => void })?.destroy?.();
    await server.stop();
    server.cleanup();
    for (const c of await containersOfCluster(server.clusterId)) await docker.getContainer(c.Id).remove({ force: true });
    await docker.getImage(BUSYBOX_ONLY).remove({ force: true }).catch(() => {});
  });

  it("runs hello world with the same output and exit code as on local", async () => {
    const onDocker = await runCli(server, ["run", "--provider", "docker", "--", "echo", "hello world"]);
    const onLocal = await runCli(server, ["run", "--provider", "local", "--", "echo", "hello world"]);
    assert.equal(onDocker.code, 0, onDocker.stderr);
    assert.equal(onDocker.stdout, "hello world\n");
    assert.deepEqual([onDocker.code, onDocker.stdout], [onLocal.code, onLocal.stdout]);
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--provider", "docker", "--limit", "1"]);
    const done = await waitDestroyed(server, job.id);
    assert.equal(done.state, "succeeded");
  });

  it("runs a data-processing pipeline", async () => {
    const result = await runCli(server, ["run", "--provider", "docker", "--", "seq 1 100000 | grep 7 | sort -r | uniq | wc -l | tr -d ' '"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), "40951");
  });

  it("runs a CPU-bound loop", async () => {
    const result = await runCli(server, ["run", "--provider", "docker", "--", "i=0; n=0; while [ $i -lt 100000 ]; do n=$(( (n + i * i) % 1000003 )); i=$((i+1)); done; echo $n"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.trim(), /^\d+$/);
  });

  it("fails a job that exits 42 with exit code 42", async () => {
    const result = await runCli(server, ["run", "--provider", "docker", "--", "echo failing; exit 42"]);
    assert.equal(result.code, 42);
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--provider", "docker", "--limit", "1"]);
    assert.equal(job.state, "failed");
    assert.equal(job.exitCode, 42);
  });

  it("runs a multi-line script", async () => {
    const file = join(tempDir("hodei-docker-script-"), "job.sh");
    writeFileSync(file, 'echo "in $(pwd)"\nfor i in 1 2 3; do\n  echo "line $i"\ndone\n');
    const result = await runCli(server, ["run", "--provider", "docker", "--script", file]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /line 1\nline 2\nline 3\n$/);
  });

  it("runs a job in an image with no Node and no glibc, through the mounted agent", async () => {
    const result = await runCli(server, ["run", "--provider", "docker", "--image", BUSYBOX_ONLY, "--", "ls /usr/bin/node 2>/dev/null || echo no-node-here; echo ran"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "no-node-here\nran\n");
  });

  it("cancels a running job and its container is gone", async () => {
    const id = (await runCli(server, ["run", "--provider", "docker", "--detach", "--", "echo ready; sleep 300"])).stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("ready"), 30_000);
    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    const job = await waitDestroyed(server, id);
    assert.equal(job.state, "canceled");
    assert.deepEqual(await containersOfCluster(server.clusterId), []);
  });

  it("keeps the OTP token out of the container: docker inspect of a running job's container shows neither a token nor HODEI_OTP_TOKEN", async () => {
    const id = (await runCli(server, ["run", "--provider", "docker", "--detach", "--", "echo ready; env; sleep 300"])).stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("PATH="), 30_000);
    const [container] = await docker.listContainers({ filters: { label: [`${LABELS.jobId}=${id}`] } });
    assert.ok(container, "the job's container runs");
    const info = await docker.getContainer(container.Id).inspect();
    assert.equal(info.State.Running, true);
    const json = JSON.stringify(info);
    assert.doesNotMatch(json, /hodei_otp_/, "no token value anywhere in docker inspect");
    assert.doesNotMatch(json, /HODEI_OTP_TOKEN/);
    for (const part of [info.Config.Env, info.Config.Cmd, info.Config.Entrypoint, info.Config.Labels, info.Args]) assert.doesNotMatch(JSON.stringify(part ?? null), /hodei_otp_|OTP_TOKEN/);
    const logs = (await runCli(server, ["logs", id])).stdout;
    assert.match(logs, /^ready$/m);
    assert.doesNotMatch(logs, /hodei_otp_|HODEI_OTP_TOKEN/, "nor in the job's environment");
    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    assert.equal((await waitDestroyed(server, id)).state, "canceled");
  });

  it("fails a job whose container is killed from outside, with a clear reason", async () => {
    const id = (await runCli(server, ["run", "--provider", "docker", "--detach", "--", "echo ready; sleep 300"])).stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("ready"), 30_000);
    const [container] = await docker.listContainers({ filters: { label: [`${LABELS.jobId}=${id}`] } });
    assert.ok(container, "the job's container runs");
    await docker.getContainer(container.Id).kill();
    const job = await waitDestroyed(server, id);
    assert.equal(job.state, "failed");
    assert.match(job.reason, new RegExp(container.Id));
    assert.match(job.reason, /killed|exited|disappeared/);
  });

  it("does not blame a job whose container is stopped from outside (docker stop, a daemon shutting down): retried without spending an attempt", async () => {
    const command = 'echo "attempt $HODEI_ATTEMPT"; if [ "$HODEI_ATTEMPT" = 2 ]; then exit 0; fi; sleep 300';
    const id = (await runCli(server, ["run", "--provider", "docker", "--detach", "--", command])).stdout.trim();
    await eventually(async () => (await runCli(server, ["logs", id])).stdout.includes("attempt 1"), 30_000);
    const [container] = await docker.listContainers({ filters: { label: [`${LABELS.jobId}=${id}`] } });
    assert.ok(container, "the job's container runs");
    await docker.getContainer(container.Id).stop({ t: 10 }); // SIGTERM, as dockerd sends its containers when it stops
    const job = (await eventually(async () => {
      const j = await jsonCli<JobJson & { attemptHistory: { failureReason: string }[] }>(server, ["jobs", "get", id]);
      return j.state === "succeeded" && j.timeline.destroyed ? j : null;
    }, 60_000))!;
    assert.ok(job, `job ${id} succeeded on its next attempt`);
    assert.equal(job.attempts, 2);
    assert.equal(job.uncountedAttempts, 1);
    assert.equal(job.maxAttempts, 1, "the user's limit was one attempt, and it was not spent");
    assert.match(job.attemptHistory[0].failureReason, /stopped by its provider \(docker\) while the job ran; the command itself did not fail/);
    assert.equal((await runCli(server, ["logs", id])).stdout, "attempt 1\nattempt 2\n");
  });

  it("gives a job in a container no way to use the API: it gets 401, finds no key file, and cannot start a local job", async () => {
    const api = `${server.url}/hodei.v1.JobService`;
    const post = (method: string, body: string) =>
      `wget -q -O- --header 'content-type: application/json' --post-data '${body}' ${api}/${method} 2>&1; echo " exit=$?"`;
    const script = [
      `echo "list: $(${post("ListJobs", "{}")})"`,
      `echo "submit: $(${post("SubmitJob", '{"command":["touch","/tmp/escaped"],"provider":"local"}')})"`,
      `echo "key files: $(find / -name admin.key 2>/dev/null | wc -l)"`,
    ].join("\n");
    const file = join(tempDir("hodei-escape-"), "escape.sh");
    writeFileSync(file, script);
    const before = (await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "500"])).length;
    const run = await runCli(server, ["run", "--provider", "docker", "--script", file]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^list: wget: server returned error: HTTP\/1\.1 401 Unauthorized\n exit=1$/m);
    assert.match(run.stdout, /^submit: wget: server returned error: HTTP\/1\.1 401 Unauthorized\n exit=1$/m);
    assert.match(run.stdout, /key files: 0/);
    const after = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--limit", "500"]);
    assert.equal(after.length, before + 1, "only the Docker job itself was created");
    const escaped = after.filter((j) => JSON.stringify((j as unknown as { command: string[] }).command) === JSON.stringify(["touch", "/tmp/escaped"]));
    assert.deepEqual(escaped, [], "no job was submitted from inside the container");
  });

  it("fails fast with a clear reason when the image is missing, without retrying", async () => {
    const started = Date.now();
    // --pull never: this machine reaches no registry, and a test must not try one.
    const result = await runCli(server, ["run", "--provider", "docker", "--max-attempts", "3", "--image", "hodei-no-such-image:1", "--pull", "never", "--", "true"]);
    assert.notEqual(result.code, 0);
    const [job] = await jsonCli<JobJson[]>(server, ["jobs", "ls", "--provider", "docker", "--limit", "1"]);
    assert.equal(job.state, "failed");
    assert.match(job.reason, /image hodei-no-such-image:1 is not on the Docker host and the job's pull policy is never/);
    assert.equal(job.attempts, 1, "a missing image is not retried");
    assert.ok(Date.now() - started < 15_000, "fails within seconds");
  });

  it("runs 20 concurrent jobs, all succeeding", async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => runCli(server, ["run", "--provider", "docker", "--", `echo job-${i}`], { timeoutMs: 180_000 })),
    );
    results.forEach((r, i) => {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `job-${i}\n`);
    });
  });
});

describe("a Docker worker that cannot reach the server", { skip: SKIP }, () => {
  it("fails at the registration deadline with the container's last output, and the container is removed", async () => {
    const server = await startServerProcess({
      HODEI_PROVIDERS: "docker",
      HODEI_DOCKER_WORKER_SERVER_URL: "http://127.0.0.1:9",
      HODEI_REGISTRATION_TIMEOUT_MS: "6000",
    });
    try {
      const id = (await runCli(server, ["run", "--detach", "--", "echo never"])).stdout.trim();
      const job = (await eventually(async () => {
        const j = await jsonCli<JobJson>(server, ["jobs", "get", id]);
        return j.timeline.destroyed ? j : null;
      }, 40_000)) as JobJson;
      assert.equal(job.state, "failed");
      assert.match(job.reason, /did not register within 6s|before registering/);
      assert.match(job.reason, /last output: .*cannot register with the control plane.*127\.0\.0\.1:9/s);
      const [token] = await jsonCli<TokenJson[]>(server, ["tokens"]);
      assert.equal(token.consumed, false, "the token was never used");
      assert.match(token.providerResourceId, /^[0-9a-f]{64}$/);
      const left = await docker.listContainers({ all: true, filters: { label: [`${LABELS.clusterId}=${server.clusterId}`] } });
      assert.deepEqual(left, []);
    } finally {
      await server.stop();
      server.cleanup();
    }
  });
});

