/**
 * Runs the job's command in its own process group, through a shell: a single-element command is
 * `sh -c <it>`, several elements are run as argv through `sh -c 'exec "$@"'`, and a script is written
 * to a file in the work directory and run with `sh`. Enforces the timeout and kills the whole process
 * tree (the group, then anything left) on cancel, timeout, or when the main process exits.
 * Output is passed on as the bytes the job wrote: it is not necessarily text, and nothing decodes it.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { wrapJobArgv } from "./job-cgroup.js";

export interface CommandSpec {
  command: string[];
  script: string;
  env: Record<string, string>;
  workDir: string;
  timeoutSeconds: number;
  /** cgroup.procs files the job's shell joins before the command runs (job-cgroup.ts); none when empty. */
  cgroupProcs?: string[];
  /** The job's oom_score_adj (job-cgroup.ts); unset: inherited from the agent. */
  oomScoreAdj?: number;
}

export interface CommandOutcome {
  exitCode: number;
  signal: string;
  timedOut: boolean;
  canceled: boolean;
  error: string;
  startedAtMs: number;
  finishedAtMs: number;
}

export interface RunningCommand {
  pid: number | undefined;
  /** Kills the tree: SIGTERM to the group, SIGKILL after graceMs. */
  cancel(graceMs: number): void;
  pause(): void;
  resume(): void;
  done: Promise<CommandOutcome>;
}

/**
 * Starts a throwaway `sh -c :` the way a job's command is started. A warm agent calls it while it
 * waits for its job: Node's first spawn in a process runs code nothing has compiled yet (about 4 ms
 * more than the next ones, measured), and started from the startup snapshot the agent has
 * `node:child_process` only as a stand-in that loads at first use (scripts/agent-snapshot.cjs).
 * Both would otherwise fall on the job. Its failure is of no consequence: the job's own spawn says
 * what is wrong. It gets the environment a job gets from the agent (`baseEnv`: no HODEI_*
 * variable), not the agent's own: with the agent's markers it showed in the local provider's scans
 * as one more idle agent while it ran.
 */
export function warmUpSpawn(baseEnv: Record<string, string>): void {
  try {
    const child = spawn("sh", ["-c", ":"], { detached: true, stdio: ["ignore", "pipe", "pipe"], env: baseEnv });
    child.once("error", () => {});
    child.stdout.resume();
    child.stderr.resume();
  } catch {
    // Nothing to warm.
  }
}

export function shellArgv(spec: CommandSpec): string[] {
  if (spec.script) {
    const file = join(spec.workDir, "hodei-script.sh");
    writeFileSync(file, spec.script.endsWith("\n") ? spec.script : `${spec.script}\n`, { mode: 0o700 });
    return ["sh", file];
  }
  if (spec.command.length === 1) return ["sh", "-c", spec.command[0]];
  return ["sh", "-c", 'exec "$@"', "sh", ...spec.command];
}

/** A command that never started: the job fails with `error`. */
function notStarted(error: string, startedAtMs: number): RunningCommand {
  return {
    pid: undefined,
    cancel() {},
    pause() {},
    resume() {},
    done: Promise.resolve({ exitCode: -1, signal: "", timedOut: false, canceled: false, error, startedAtMs, finishedAtMs: Date.now() }),
  };
}

export function startCommand(spec: CommandSpec, onOutput: (stream: string, data: Buffer) => void): RunningCommand {
  const startedAtMs = Date.now();
  let argv: string[];
  try {
    const isWrapped = (spec.cgroupProcs?.length ?? 0) > 0 || spec.oomScoreAdj !== undefined;
    argv = isWrapped ? wrapJobArgv({ procs: spec.cgroupProcs ?? [], oomScoreAdj: spec.oomScoreAdj }, shellArgv(spec)) : shellArgv(spec);
  } catch (err) {
    return notStarted(`could not prepare the command: ${(err as Error).message}`, startedAtMs);
  }
  let child: ChildProcessByStdio<null, Readable, Readable>;
  try {
    child = spawn(argv[0], argv.slice(1), {
      cwd: spec.workDir,
      env: spec.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    // Node throws, rather than emitting 'error', when the system refuses the exec's arguments
    // (E2BIG: one argument over Linux's MAX_ARG_STRLEN, which submit refuses too) or memory (ENOMEM).
    return notStarted(`could not start the command: ${(err as Error).message}`, startedAtMs);
  }
  let timedOut = false;
  let canceled = false;
  let killTimer: NodeJS.Timeout | undefined;

  const killGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // The group is gone.
    }
  };
  const terminate = (graceMs: number) => {
    killGroup("SIGTERM");
    if (!killTimer) {
      killTimer = setTimeout(() => killGroup("SIGKILL"), graceMs);
      killTimer.unref();
    }
  };

  child.stdout.on("data", (buf: Buffer) => onOutput("stdout", buf));
  child.stderr.on("data", (buf: Buffer) => onOutput("stderr", buf));

  const timeoutTimer =
    spec.timeoutSeconds > 0
      ? setTimeout(() => {
          timedOut = true;
          terminate(2000);
        }, spec.timeoutSeconds * 1000)
      : undefined;

  const done = new Promise<CommandOutcome>((resolve) => {
    let spawnError = "";
    child.once("error", (err) => {
      spawnError = `could not start the command: ${err.message}`;
    });
    child.once("exit", (code, signal) => {
      // Leftover background processes of the job die with it; this also closes their pipes.
      killGroup("SIGKILL");
    });
    child.once("close", (code, signal) => {
      if (timeoutTimer) clearTimeout(timeoutTimer);
      if (killTimer) clearTimeout(killTimer);
      resolve({
        exitCode: code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : -1),
        signal: signal ?? "",
        timedOut,
        canceled,
        error: spawnError,
        startedAtMs,
        finishedAtMs: Date.now(),
      });
    });
  });

  return {
    pid: child.pid,
    cancel(graceMs: number) {
      canceled = true;
      terminate(graceMs);
    },
    pause() {
      child.stdout.pause();
      child.stderr.pause();
    },
    resume() {
      child.stdout.resume();
      child.stderr.resume();
    },
    done,
  };
}

function signalNumber(signal: string): number | undefined {
  const numbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };
  return numbers[signal];
}
