/**
 * Where an agent's start goes: runs the bundled agent (dist/agent.cjs, or AGENT=path) BENCH_RUNS
 * times against a real server, with HODEI_AGENT_BOOT_TRACE=1 and its assignment on stdin at once
 * (as a cold Docker worker gets it), and prints the median of each phase, in ms since the process
 * started:
 *   entry      the bundle's first line runs (Node's own boot)
 *   loaded     every module of the bundle evaluated
 *   assigned   the assignment line read from stdin
 *   register   Register called
 *   registered the first Register answer (the token is a made-up one, so the answer is a refusal:
 *              the same round trip and first-call code paths, without the token's row)
 *   connected  the idle Ping answered (it runs beside the assignment, so it may land after Register)
 * and, as a floor, the wall time of `node -e 0`.
 *
 *   BENCH_RUNS=15 npx tsx bench/agent-boot.ts
 *   AGENT=before.cjs,after.cjs npx tsx bench/agent-boot.ts   (several bundles, runs interleaved;
 *       a path ending in .blob is a startup snapshot, run as `node --snapshot-blob <it>`)
 *   IMAGES=hodei-worker:a,hodei-worker:b npx tsx bench/agent-boot.ts
 *       (the agent of each worker image in a container, `docker run -i --network host`, as a cold
 *       Docker worker starts it; the phases are then since the process started in its container)
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ROOT, startServerProcess } from "../test/e2e/harness.js";

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const IMAGES = process.env.IMAGES ? process.env.IMAGES.split(",") : [];
const AGENTS = IMAGES.length > 0 ? IMAGES.map((image) => `image:${image}`) : (process.env.AGENT ?? resolve(ROOT, "dist", "agent.cjs")).split(",");
/** The agents' work directories (each agent makes its own): removed at the end. */
const WORK_ROOT = mkdtempSync(join(tmpdir(), "hodei-boot-"));
const ENV = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" };

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)] * 10) / 10;
};

function runOnce(agent: string, serverUrl: string): Promise<{ phases: Record<string, number>; wallMs: number }> {
  return new Promise((resolvePhases, reject) => {
    const t0 = performance.now();
    const agentEnv = { HODEI_SERVER_URL: serverUrl, HODEI_AGENT_BOOT_TRACE: "1", HODEI_REGISTER_TIMEOUT_MS: "5000" };
    const [command, args] = agent.startsWith("image:")
      ? ["docker", ["run", "-i", "--rm", "--network", "host", ...Object.entries(agentEnv).flatMap(([k, v]) => ["-e", `${k}=${v}`]), agent.slice("image:".length)]]
      : agent.endsWith(".blob") ? [process.execPath, ["--snapshot-blob", agent]] : [process.execPath, [agent]];
    const child = spawn(command, args, { env: { ...ENV, ...agentEnv }, stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const assignment = { otpToken: `hodei_otp_${randomUUID()}`, workerId: randomUUID(), workerName: "bench", jobId: randomUUID(), attempt: 1, workDir: join(WORK_ROOT, randomUUID()) };
    child.stdin.end(`${JSON.stringify(assignment)}\n`);
    child.once("error", reject);
    child.once("exit", () => {
      const line = stderr.split("\n").find((l) => l.includes("boot phases"));
      if (!line) return reject(new Error(`no boot trace:\n${stderr}`));
      const { time: _t, msg: _m, ...phases } = JSON.parse(line) as Record<string, number>;
      resolvePhases({ phases, wallMs: performance.now() - t0 });
    });
  });
}

function nodeFloor(): Promise<number> {
  return new Promise((resolveMs) => {
    const t0 = performance.now();
    spawn(process.execPath, ["-e", "0"], { env: ENV, stdio: "ignore" }).once("exit", () => resolveMs(performance.now() - t0));
  });
}

// Made-up tokens are refused; the bench is no attack: no delayed refusals.
const server = await startServerProcess({ HODEI_PROVIDERS: "local", HODEI_LOCAL_WARM_WORKERS: "0", HODEI_REGISTER_FREE_FAILURES: "1000000" });
try {
  const workerUrl = `http://127.0.0.1:${server.workerPort}`;
  for (const agent of AGENTS) for (let i = 0; i < 3; i++) await runOnce(agent, workerUrl); // warm the page cache
  const runs = new Map(AGENTS.map((a) => [a, [] as Array<Record<string, number>>]));
  const walls = new Map(AGENTS.map((a) => [a, [] as number[]]));
  const floors: number[] = [];
  // Interleaved, so that a busy moment of the machine falls on every bundle alike.
  for (let i = 0; i < RUNS; i++) {
    for (const agent of AGENTS) {
      const { phases, wallMs } = await runOnce(agent, workerUrl);
      runs.get(agent)!.push(phases);
      walls.get(agent)!.push(wallMs);
    }
    floors.push(await nodeFloor());
  }
  const report = AGENTS.map((agent) => {
    // `connected` is absent from runs whose Ping was answered after Register: kept out of the steps.
    const keys = ["entry", "loaded", "assigned", "register", "registered"];
    const phases = Object.fromEntries(keys.map((k) => [k, median(runs.get(agent)!.map((r) => r[k]))]));
    // Per run, each phase from the one before (Node's boot, which no bundle changes, drops out).
    const steps = Object.fromEntries(keys.slice(1).map((k, i) => [`${keys[i]}_to_${k}`, median(runs.get(agent)!.map((r) => r[k] - r[keys[i]]))]));
    steps.loaded_to_registered = median(runs.get(agent)!.map((r) => r.registered - r.loaded));
    return { agent, median_ms_since_process_start: phases, median_step_ms: steps, agent_wall_ms: median(walls.get(agent)!) };
  });
  console.log(JSON.stringify({ runs: RUNS, agents: report, node_e_0_wall_ms: median(floors) }, null, 2));
} finally {
  await server.stop();
  server.cleanup();
  rmSync(WORK_ROOT, { recursive: true, force: true });
}
