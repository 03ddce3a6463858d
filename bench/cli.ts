/**
 * The `cli` section of `npm run bench` (alone: BENCH_ONLY=cli): how long `hodei run -- true` takes
 * as a whole process (start node, load the CLI, submit, follow the job to its end, exit) against a
 * warm local server, beside `node -e 0` measured in the same run, alternating one with the other so
 * that a machine whose speed drifts affects both alike. The target: run_true_ms p50 within 1.5x
 * node_baseline_ms p50. The job itself (a warm local worker running `true`) is part of the figure.
 *
 * BENCH_CLI_RUNS (default 20) sets the runs of each; two of each are run first, not counted.
 * Without a server given, this section starts its own (local provider only) and stops it.
 */
import { spawn } from "node:child_process";
import { HODEI_BIN, type ServerProcess, startServerProcess } from "../test/e2e/harness.js";

const RUNS = Number(process.env.BENCH_CLI_RUNS ?? 20);
const WARMUP = 2;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const round = (n: number) => Math.round(n * 10) / 10;

/** Wall time of one process from spawn to exit, ms; it must exit 0. */
function timeProcess(args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { env, stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`node ${args.join(" ")} exited ${code}`));
      else resolve(performance.now() - t0);
    });
  });
}

export async function cliSection(given?: Pick<ServerProcess, "url" | "dataDir">) {
  const own = given ? null : await startServerProcess({ HODEI_PROVIDERS: "local" });
  const server = given ?? own!;
  // What a user's shell would give: no NODE_OPTIONS or the like from this process. HODEI_DATA_DIR:
  // the CLI finds the server's admin key there.
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", HODEI_SERVER_URL: server.url, HODEI_DATA_DIR: server.dataDir };
  const runTrue = [HODEI_BIN, "run", "--", "true"];
  const baseline = ["-e", "0"];
  try {
    for (let i = 0; i < WARMUP; i++) {
      await timeProcess(runTrue, env);
      await timeProcess(baseline, env);
    }
    const cli: number[] = [];
    const node: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      cli.push(await timeProcess(runTrue, env));
      node.push(await timeProcess(baseline, env));
    }
    const runTrueMs = percentile(cli, 50);
    const nodeMs = percentile(node, 50);
    return {
      run_true_ms: round(runTrueMs),
      node_baseline_ms: round(nodeMs),
      ratio: round(runTrueMs / nodeMs),
      runs: RUNS,
      run_true_p95_ms: round(percentile(cli, 95)),
      node_baseline_p95_ms: round(percentile(node, 95)),
      target: "run_true_ms within 1.5x node_baseline_ms",
    };
  } finally {
    if (own) {
      await own.stop();
      own.cleanup();
    }
  }
}
