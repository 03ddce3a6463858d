/**
 * The agent runtime and the offline worker image on a real Docker daemon: idempotent assembly and
 * build, node and busybox in the image, and the runtime mounted into an image with no node and no
 * glibc. Uses a stand-in agent (a script that prints), so it needs of `npm run build` only the
 * snapshot's entry (dist/agent-snapshot.cjs).
 * Skips, with a visible reason, when no daemon answers. Everything it creates carries the label
 * io.hodei.test=<run id>, and the suite ends by proving none of it is left.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import Dockerode from "dockerode";
import { AGENT_COMMAND, assembleAgentRuntime, buildWorkerImage, busyboxRootfs, importRootfs, NODE_COMMAND } from "./docker-image.js";

const execFileAsync = promisify(execFile);
/** The build's snapshot entry: the stand-in agents below have none beside them. */
const SNAPSHOT_ENTRY = join(import.meta.dirname, "..", "..", "dist", "agent-snapshot.cjs");
const SOCKET = process.env.HODEI_DOCKER_SOCKET ?? "/var/run/docker.sock";
const docker = new Dockerode({ socketPath: SOCKET });
const daemonProblem = await Promise.race([
  docker.ping().then(() => null, (err: Error) => err.message),
  new Promise<string>((done) => setTimeout(done, 3000, "no answer in 3 s").unref()),
]);
const SKIP = daemonProblem ? `no Docker daemon: ${SOCKET}: ${daemonProblem}` : false;
if (SKIP) console.log(SKIP);

const RUN_ID = randomUUID().slice(0, 8);
const TEST_LABEL = "io.hodei.test";
const LABEL_FILTER = { label: [`${TEST_LABEL}=${RUN_ID}`] };
const WORKER_TAG = `hodei-worker-test:${RUN_ID}`;
const BUSYBOX_TAG = `hodei-test-busybox:${RUN_ID}`;

interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Creates, starts, waits for, reads and removes one labelled container. */
async function runContainer(image: string, cmd: string[], binds: string[] = []): Promise<Run> {
  const container = await docker.createContainer({
    Image: image,
    Cmd: cmd,
    Labels: { [TEST_LABEL]: RUN_ID },
    HostConfig: { NetworkMode: "host", AutoRemove: false, Binds: binds },
  });
  try {
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    const logs = await container.logs({ stdout: true, stderr: true, follow: false });
    return { exitCode: StatusCode, ...demux(logs) };
  } finally {
    await container.remove({ force: true });
  }
}

/** Splits Docker's multiplexed log buffer: 8-byte headers (stream 1|2, size) before each frame. */
function demux(buffer: Buffer): { stdout: string; stderr: string } {
  const out: Record<number, string> = { 1: "", 2: "" };
  for (let at = 0; at + 8 <= buffer.length; ) {
    const size = buffer.readUInt32BE(at + 4);
    out[buffer[at]] += buffer.subarray(at + 8, at + 8 + size).toString();
    at += 8 + size;
  }
  return { stdout: out[1], stderr: out[2] };
}

async function removeEverythingLabelled(): Promise<void> {
  for (const c of await docker.listContainers({ all: true, filters: LABEL_FILTER })) await docker.getContainer(c.Id).remove({ force: true });
  for (const i of await docker.listImages({ filters: LABEL_FILTER })) await docker.getImage(i.Id).remove({ force: true });
}

describe("docker worker image", { skip: SKIP }, () => {
  let workDir: string;
  let runtimeDir: string;
  let agentPath: string;
  const assemble = () => assembleAgentRuntime({ targetDir: runtimeDir, nodePath: process.execPath, agentPath, snapshotEntryPath: SNAPSHOT_ENTRY });

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), "hodei-image-test-"));
    runtimeDir = join(workDir, "agent-runtime");
    agentPath = join(workDir, "agent.cjs");
    await writeFile(agentPath, 'console.log("agent ok", process.versions.node);\n');
  });

  after(async () => {
    await removeEverythingLabelled();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it("assembles the agent runtime once: a second call returns the same hash and rewrites nothing", async () => {
    const first = await assemble();
    for (const file of ["bin/node", "lib/ld-linux-x86-64.so.2", "lib/libc.so.6", "agent.cjs", ".hash"]) {
      assert.ok((await stat(join(runtimeDir, file))).isFile(), `${file} is in the runtime`);
    }
    const mtimes = async () => Promise.all(["bin/node", "agent.cjs", ".hash"].map(async (f) => (await stat(join(runtimeDir, f))).mtimeMs));
    const mtimesBefore = await mtimes();
    const startedMs = performance.now();
    const second = await assemble();
    assert.equal(second.hash, first.hash);
    assert.deepEqual(await mtimes(), mtimesBefore);
    console.log(`unchanged runtime checked in ${Math.round(performance.now() - startedMs)} ms`);
  });

  it("replaces the runtime in one piece when the agent changes", async () => {
    const old = await assemble();
    await writeFile(agentPath, 'console.log("agent ok", process.versions.node); // v2\n');
    const updated = await assemble();
    assert.notEqual(updated.hash, old.hash);
    assert.match(await readFile(join(runtimeDir, "agent.cjs"), "utf8"), /v2/);
    assert.deepEqual(await readdir(workDir), ["agent-runtime", "agent.cjs"], "no staging or old directory is left");
  });

  it("carries the bundle found beside the agent, and is rebuilt (its snapshot too) when it changes", async () => {
    const companions = join(workDir, "with-companions");
    await mkdir(companions);
    const loader = join(companions, "agent.cjs");
    await writeFile(loader, 'require("./agent-main.cjs");\n');
    // A bundle hands its main to the snapshot it is built into (src/agent/main.ts does).
    const bundle = (word: string) => `globalThis.__hodeiSnapshot.setMain(() => console.log("${word}"), () => {});\n`;
    await writeFile(join(companions, "agent-main.cjs"), bundle("main"));
    const target = join(companions, "agent-runtime");
    const assembleWith = () => assembleAgentRuntime({ targetDir: target, nodePath: process.execPath, agentPath: loader, snapshotEntryPath: SNAPSHOT_ENTRY });
    const fromSnapshot = () => execFileAsync(join(target, "bin", "node"), ["--snapshot-blob", join(target, "agent.blob")]).then((r) => r.stdout);
    const first = await assembleWith();
    assert.equal(await readFile(join(target, "agent-main.cjs"), "utf8"), bundle("main"));
    assert.equal(await fromSnapshot(), "main\n");
    await writeFile(join(companions, "agent-main.cjs"), bundle("main v2"));
    const updated = await assembleWith();
    assert.notEqual(updated.hash, first.hash);
    assert.equal(await readFile(join(target, "agent-main.cjs"), "utf8"), bundle("main v2"));
    assert.equal(await fromSnapshot(), "main v2\n");
  });

  it("builds the worker image, and a second build with nothing changed returns at once", async () => {
    const labels = { [TEST_LABEL]: RUN_ID };
    const first = await buildWorkerImage(docker, { tag: WORKER_TAG, runtimeDir, labels });
    assert.equal(first.built, true);
    console.log(`${WORKER_TAG}: ${(first.sizeBytes / 1e6).toFixed(1)} MB, built in ${first.seconds.toFixed(2)} s`);

    const second = await buildWorkerImage(docker, { tag: WORKER_TAG, runtimeDir, labels });
    console.log(`${WORKER_TAG}: unchanged, checked in ${(second.seconds * 1000).toFixed(0)} ms`);
    assert.equal(second.built, false);
    assert.equal(second.id, first.id);
    assert.ok(second.seconds < 1, `an up-to-date check took ${second.seconds} s`);

    const image = await docker.getImage(WORKER_TAG).inspect();
    assert.equal(image.Config.Labels?.[TEST_LABEL], RUN_ID);
    assert.deepEqual(image.Config.Cmd, AGENT_COMMAND);
    assert.equal(image.Config.WorkingDir, "/work");
  });

  it("removes the image a rebuild replaced, but not one that still carries a tag of its own", async () => {
    const build = (extra: Record<string, string>) => buildWorkerImage(docker, { tag: WORKER_TAG, runtimeDir, labels: { [TEST_LABEL]: RUN_ID, ...extra } });
    const exists = (id: string) => docker.getImage(id).inspect().then(() => true, () => false);
    const kept = await build({ "io.hodei.test-build": "kept" });
    await docker.getImage(kept.id).tag({ repo: WORKER_TAG.split(":")[0], tag: `${RUN_ID}-mine` });
    const replaced = await build({ "io.hodei.test-build": "replaced" });
    assert.notEqual(replaced.id, kept.id);
    assert.equal(await exists(kept.id), true, "an image a user tagged stays, with that tag");
    assert.deepEqual((await docker.getImage(kept.id).inspect()).RepoTags, [`${WORKER_TAG}-mine`]);
    const last = await build({ [TEST_LABEL + ".build"]: "last" });
    assert.notEqual(last.id, replaced.id);
    assert.equal(await exists(replaced.id), false, "an image with no tag left goes");
    await docker.getImage(`${WORKER_TAG}-mine`).remove();
    await build({}); // the image the next tests run, as the first test built it
  });

  it("runs node through the runtime's loader, the agent, and busybox in the worker image", async () => {
    const node = await runContainer(WORKER_TAG, [...NODE_COMMAND, "-e", "console.log(process.versions.node)"]);
    assert.deepEqual(node, { exitCode: 0, stdout: `${process.versions.node}\n`, stderr: "" });

    const agent = await runContainer(WORKER_TAG, [...AGENT_COMMAND]);
    assert.equal(agent.stdout, `agent ok ${process.versions.node}\n`);

    const shell = await runContainer(WORKER_TAG, ["sh", "-c", "seq 1 5 | wc -l; /usr/bin/env true && stat -c %a /tmp && pwd"]);
    assert.deepEqual(shell, { exitCode: 0, stdout: "5\n1777\n/work\n", stderr: "" });
  });

  it("runs node from the runtime mounted read-only into an image with no node and no glibc", async () => {
    await importRootfs(docker, { tag: BUSYBOX_TAG, entries: await busyboxRootfs("/bin/busybox"), changes: [`LABEL ${TEST_LABEL}=${RUN_ID}`] });
    const bare = await runContainer(BUSYBOX_TAG, ["/bin/sh", "-c", "ls / | tr '\\n' ' '"]);
    assert.doesNotMatch(bare.stdout, /\blib|\busr\b|\bopt\b/, `the bare image holds only ${bare.stdout}`);

    const node = await runContainer(BUSYBOX_TAG, [...NODE_COMMAND, "-e", "console.log(process.versions.node)"], [`${runtimeDir}:/opt/hodei:ro`]);
    assert.deepEqual(node, { exitCode: 0, stdout: `${process.versions.node}\n`, stderr: "" });
  });

  it("leaves no container or image behind", async () => {
    assert.deepEqual(await docker.listContainers({ all: true, filters: LABEL_FILTER }), []);
    await removeEverythingLabelled();
    assert.deepEqual(await docker.listImages({ filters: LABEL_FILTER }), []);
  });
});
