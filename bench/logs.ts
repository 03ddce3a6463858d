/**
 * The `logs` section of `npm run bench` (alone: BENCH_ONLY=logs): how fast a large output is
 * ingested on the local provider. One job prints BENCH_LOG_LINES lines (default 1,000,000:
 * `seq 1 N`, 6.9 MB); with BENCH_LOG_LINE_BYTES=W each line is W bytes (`seq -f` with zero
 * padding), which needs the server's log limit above N * W.
 *
 *   seconds          the job's timeline: dispatched (started) -> result stored (finished), so the
 *                    command's own run, the agent's cutting, the stream, the server's checks and
 *                    writes, and the result; not the worker's start or destroy
 *   ingest_mb_per_s  bytes / seconds, in 10^6 bytes per second (target: at least 50); the median of
 *                    BENCH_LOG_RUNS (3) runs after BENCH_LOG_WARMUP (1) uncounted ones, whose figures
 *                    are printed apart (warmup_runs_mb_per_s: a fresh server's first large output)
 *   cpu_ms           per run, CPU ms of the server (submit to the read-back's end) and of the workers
 *                    reaped meanwhile (the job's agent, its boot included, and the command)
 *   checked          GetLogs read back every stdout byte: the same bytes as the command's own
 *                    output (count, lines and SHA-256), in order
 *   cli_run_seconds  what a user waits for: `hodei run -- <the command>` as a whole process (start
 *                    the CLI, submit, follow the output to its end, exit), its stdout checked
 *                    against the command's own; the median of the same number of runs, after one
 *                    uncounted (with a server given: the full bench and BENCH_ONLY=logs)
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { createClient } from "@connectrpc/connect";
import type { Job, JobService } from "../src/gen/hodei/v1/api_pb.js";
import { cliEnv, HODEI_BIN } from "../test/e2e/harness.js";
import { ENDED } from "./job-timeline.js";
import { cpuMs, workersCpuMs } from "./throughput.js";

type Client = ReturnType<typeof createClient<typeof JobService>>;

export const LOG_LINES = Number(process.env.BENCH_LOG_LINES ?? 1_000_000);
const WARMUP = Number(process.env.BENCH_LOG_WARMUP ?? 1);
const LINE_BYTES = Number(process.env.BENCH_LOG_LINE_BYTES ?? 0);

/** The job's command: N lines, plain `seq` or zero-padded to LINE_BYTES (newline included). */
function command(): string[] {
  return LINE_BYTES > 1 ? ["seq", "-f", `%0${LINE_BYTES - 1}.0f`, "1", String(LOG_LINES)] : ["seq", "1", String(LOG_LINES)];
}

/** The log limit a server needs for this section's job (with room to spare). */
export function logLimitForBench(): number {
  const bytes = LINE_BYTES > 1 ? LOG_LINES * LINE_BYTES : LOG_LINES * 8;
  return Math.max(16 * 1024 * 1024, 2 * bytes);
}

async function waitFinal(client: Client, id: string): Promise<Job> {
  for (;;) {
    const job = await client.getJob({ id });
    if (ENDED.has(job.state)) return job;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads the job's whole stdout back through GetLogs: its size, lines and digest. */
async function readBack(client: Client, jobId: string): Promise<{ bytes: number; lines: number; sha256: string; entries: number; inOrder: boolean; firstMs: number; lastMs: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  let lines = 0;
  let entries = 0;
  let lastSeq = 0n;
  let inOrder = true;
  let firstMs = NaN;
  let lastMs = NaN;
  for await (const entry of client.getLogs({ jobId, follow: false })) {
    entries++;
    if (entry.seq !== lastSeq + 1n) inOrder = false;
    lastSeq = entry.seq;
    if (entry.stream !== "stdout") continue;
    if (Number.isNaN(firstMs)) firstMs = timestampMs(entry.time!);
    lastMs = timestampMs(entry.time!);
    hash.update(entry.data);
    bytes += entry.data.length;
    for (const b of entry.data) if (b === 10) lines++;
  }
  return { bytes, lines, sha256: hash.digest("hex"), entries, inOrder, firstMs, lastMs };
}

/** Wall seconds of `hodei run -- cmd` as a process, and the SHA-256 of what it printed. */
function timeCliRun(server: { url: string; dataDir: string }, cmd: string[]): Promise<{ seconds: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    const t0 = performance.now();
    // What a user's shell would give (the tests' CLI environment); the CLI finds the admin key in HODEI_DATA_DIR.
    const child = spawn(process.execPath, [HODEI_BIN, "run", "--", ...cmd], { env: cliEnv(server), stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.on("data", (data: Buffer) => hash.update(data));
    child.once("error", reject);
    child.once("close", (code) => {
      if (code !== 0) reject(new Error(`hodei run -- ${cmd.join(" ")} exited ${code}`));
      else resolve({ seconds: (performance.now() - t0) / 1000, sha256: hash.digest("hex") });
    });
  });
}

export async function logsSection(client: Client, server?: { url: string; dataDir: string; process?: { pid?: number } }, runs = Number(process.env.BENCH_LOG_RUNS ?? 3)): Promise<Record<string, unknown>> {
  const cmd = command();
  const expected = execFileSync(cmd[0], cmd.slice(1), { maxBuffer: 1024 * 1024 * 1024 });
  const expectedSha = createHash("sha256").update(expected).digest("hex");
  const results: { seconds: number; mbPerS: number; clientSeconds: number; phases: number[]; cpuMs?: { server: number; workers: number } }[] = [];
  const serverPid = server?.process?.pid;
  let check: Awaited<ReturnType<typeof readBack>> | undefined;
  // The first large output a server ingests also compiles its ingest path (V8's JIT): like the other
  // sections' warm-up jobs, WARMUP runs go first and are reported apart, not counted.
  for (let i = 0; i < WARMUP + runs; i++) {
    const t0 = performance.now();
    const cpu0 = serverPid ? { server: cpuMs(serverPid).self, workers: workersCpuMs(serverPid) } : undefined;
    const { job } = await client.submitJob({ command: cmd });
    const done = await waitFinal(client, job!.id);
    const clientSeconds = (performance.now() - t0) / 1000;
    if (done.state !== "succeeded") throw new Error(`logs job ${done.id} ended ${done.state}: ${done.reason}`);
    const seconds = (timestampMs(done.timeline!.finished!) - timestampMs(done.timeline!.started!)) / 1000;
    check = await readBack(client, done.id);
    const isKept = check.bytes === expected.length && check.lines === LOG_LINES && check.sha256 === expectedSha && check.inOrder;
    if (!isKept || done.logsTruncated || done.logsIncomplete) {
      throw new Error(`logs job ${done.id}: read back ${check.bytes} bytes, ${check.lines} lines (expected ${expected.length}, ${LOG_LINES}), in order ${check.inOrder}, truncated ${done.logsTruncated}, incomplete ${done.logsIncomplete}`);
    }
    const started = timestampMs(done.timeline!.started!);
    const finished = timestampMs(done.timeline!.finished!);
    // The server's CPU from the submit to the read-back's end, and the job's worker's whole life (reaped by then, or not yet).
    const cpuMsOfRun = cpu0 && serverPid ? { server: cpuMs(serverPid).self - cpu0.server, workers: workersCpuMs(serverPid) - cpu0.workers } : undefined;
    // started -> first chunk cut by the agent, -> last chunk cut, -> result stored.
    const phases = [check.firstMs - started, check.lastMs - check.firstMs, finished - check.lastMs].map((ms) => Math.round(ms));
    results.push({ seconds, mbPerS: expected.length / seconds / 1e6, clientSeconds, phases, cpuMs: cpuMsOfRun });
  }
  const warmups = results.splice(0, WARMUP);
  const best = results.reduce((a, b) => (b.mbPerS > a.mbPerS ? b : a));
  const sorted = [...results].sort((a, b) => a.mbPerS - b.mbPerS);
  const median = sorted[Math.floor(sorted.length / 2)];
  const cliSeconds: number[] = [];
  if (server) {
    for (let i = 0; i < 1 + runs; i++) {
      const run = await timeCliRun(server, cmd);
      if (run.sha256 !== expectedSha) throw new Error(`hodei run -- ${cmd.join(" ")} printed other bytes than the command (SHA-256 ${run.sha256})`);
      if (i > 0) cliSeconds.push(run.seconds);
    }
  }
  const cliMedian = [...cliSeconds].sort((a, b) => a - b)[Math.floor(cliSeconds.length / 2)];
  return {
    command: cmd.join(" "),
    lines: LOG_LINES,
    bytes: expected.length,
    runs,
    seconds: Math.round(median.seconds * 1000) / 1000,
    ingest_mb_per_s: Math.round(median.mbPerS * 10) / 10,
    best_mb_per_s: Math.round(best.mbPerS * 10) / 10,
    runs_mb_per_s: results.map((r) => Math.round(r.mbPerS * 10) / 10),
    warmup_runs_mb_per_s: warmups.map((r) => Math.round(r.mbPerS * 10) / 10),
    submit_to_final_seconds: results.map((r) => Math.round(r.clientSeconds * 1000) / 1000),
    chunks: check?.entries ?? 0,
    // Per run, ms: dispatch -> the agent cut the first chunk, first -> last chunk cut, last chunk cut -> result stored.
    phases_ms: results.map((r) => ({ to_first_chunk: r.phases[0], output: r.phases[1], to_result: r.phases[2] })),
    ...(serverPid && {
      // Per run, ms of CPU (10 ms ticks): the server from the submit to the end of the read-back (its
      // ingest, the result, the GetLogs of 6.9 MB and the polls), and the workers reaped meanwhile (the
      // job's agent over its whole life, its boot included, and the command), 0 when not yet reaped.
      cpu_ms: results.map((r) => r.cpuMs),
    }),
    checked: "every stdout byte read back through GetLogs, in seq order: same count, lines and SHA-256 as the command's own output",
    ...(server && {
      cli_run_seconds: Math.round(cliMedian * 1000) / 1000,
      cli_runs_seconds: cliSeconds.map((x) => Math.round(x * 1000) / 1000),
      cli_checked: "hodei run printed the command's output, byte for byte (SHA-256)",
    }),
    target: "ingest_mb_per_s at least 50",
  };
}
