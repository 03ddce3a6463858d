/**
 * Runs the job's command in its own process group, through a shell: a single-element command is
 * `sh -c <it>`, several elements are run as argv through `sh -c 'exec "$@"'`, and a script is written
 * to a file in the work directory and run with `sh`. Enforces the timeout and kills the whole process
 * tree (the group, then anything left) on cancel, timeout, or when the main process exits.
 * Output is passed on as the bytes the job wrote: it is not necessarily text, and nothing decodes it.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { accessSync, constants, statSync, writeFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { Readable, Writable } from "node:stream";
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
 * A shell started ahead of the job by an agent that waits for its assignment: `sh -s`, in a
 * session of its own, with the environment a job gets from the agent (`baseEnv`: no HODEI_*
 * variable, so that it never shows as one more agent in the local provider's scans), reading
 * its script from a pipe. The job's start then writes one script to it (the job's variables,
 * `cd`, `exec` of the command's argv) instead of forking: Node's spawn holds the agent's event
 * loop for the fork and the exec of `sh` (5 to 8 ms measured here, a third of a warm job's run),
 * and the first spawn of a process runs code nothing has compiled yet, or, started from the startup
 * snapshot, loads `node:child_process` (scripts/agent-snapshot.cjs). It holds no secret until the
 * job's script reaches it, and exits at the end of its input: when the agent exits without a job
 * (released while idle, killed), the pipe closes and so does the shell.
 */
export interface PreparedShell {
  child: ChildProcessByStdio<Writable, Readable, Readable>;
  /** The environment it was started with: the script exports only what the job's differs in. */
  env: Record<string, string>;
  failed: boolean;
}

export function prepareShell(baseEnv: Record<string, string>): PreparedShell | undefined {
  try {
    const child = spawn("sh", ["-s"], { detached: true, stdio: ["pipe", "pipe", "pipe"], env: baseEnv });
    const prepared: PreparedShell = { child, env: baseEnv, failed: false };
    child.once("error", () => void (prepared.failed = true));
    child.stdin.on("error", () => void (prepared.failed = true)); // EPIPE: it is gone
    return prepared;
  } catch {
    return undefined; // No shell to prepare: the job's spawn says what is wrong.
  }
}

/** Lets a shell that will not run a job go: it reads the end of its input and exits. */
export function releaseShell(prepared: PreparedShell): void {
  prepared.child.stdout.resume();
  prepared.child.stderr.resume();
  prepared.child.stdin.end();
}

/** Linux's limit on one argument or NAME=VALUE (MAX_ARG_STRLEN), and a total well under ARG_MAX. */
const MAX_ARG_BYTES = 128 * 1024 - 1;
const MAX_EXEC_BYTES = 1024 * 1024;
const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
/** The shell script of an argv-form command (shellArgv): exec of its arguments, as given. */
const EXEC_ARGS = 'exec "$@"';

/**
 * The script that makes the prepared shell the job's process, as a fresh spawn of argv would be:
 * the job's environment (what differs from the shell's, and OLDPWD as the job's, which `cd`
 * sets), its working directory, stdin from /dev/null, then exec of argv. Undefined when the job
 * is better started by a spawn of its own, which reports the failure as before: a variable name
 * the shell cannot export, an argument Linux would refuse (E2BIG), a working directory that is
 * not one or is relative.
 */
export function shellScript(prepared: PreparedShell, argv: string[], env: Record<string, string>, workDir: string): string | undefined {
  let total = 0;
  for (const arg of argv) {
    const bytes = Buffer.byteLength(arg);
    if (bytes > MAX_ARG_BYTES || arg.includes("\0")) return undefined;
    total += bytes + 1;
  }
  const lines: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    const bytes = Buffer.byteLength(name) + 1 + Buffer.byteLength(value);
    if (!SHELL_NAME.test(name) || bytes > MAX_ARG_BYTES || value.includes("\0")) return undefined;
    total += bytes + 1;
    if (prepared.env[name] !== value) lines.push(`export ${name}=${quote(value)}`);
  }
  for (const name of Object.keys(prepared.env)) {
    if (name in env) continue;
    if (!SHELL_NAME.test(name)) return undefined;
    lines.push(`unset ${name}`);
  }
  if (total > MAX_EXEC_BYTES) return undefined;
  // A spawn that would not find argv's program reports ENOENT, which the shell's exec would not say.
  if (!argv[0].includes("/") && !isOnPath(argv[0], env.PATH)) return undefined;
  try {
    // Relative, it would be resolved by `cd` (and CDPATH, which the job may set), not as a spawn's cwd is.
    if (!isAbsolute(workDir) || !statSync(workDir).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  lines.push(`cd -- ${quote(workDir)} || exit 126`);
  lines.push("OLDPWD" in env ? `export OLDPWD=${quote(env.OLDPWD)}` : "unset OLDPWD");
  const command = argvFormCommand(argv);
  if (command) {
    // argv's own `sh -c 'exec "$@"'` would only exec the command: this shell does it, one exec
    // fewer, when both would be found (else the wrapper runs and fails as a spawn's would). eval:
    // an exec that fails anyway (a name that is only a builtin, a file that is not executable)
    // says so as the wrapper does, at its line 1 (dash; busybox still counts the script's lines).
    lines.push(`set -- ${command.map(quote).join(" ")}`);
    lines.push(`if command -v -- sh >/dev/null && command -v -- "$1" >/dev/null; then eval 'exec "$@" </dev/null'; fi`);
    lines.push(`exec sh -c ${quote(EXEC_ARGS)} sh "$@" </dev/null`);
  } else {
    lines.push(`exec ${argv.map(quote).join(" ")} </dev/null`);
  }
  return `${lines.join("\n")}\n`;
}

/** Whether `name` is an executable file in an absolute directory of `path` (a spawn would find it there). */
function isOnPath(name: string, path: string | undefined): boolean {
  for (const dir of (path ?? "").split(":")) {
    if (!isAbsolute(dir)) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return true;
    } catch {
      // Not here.
    }
  }
  return false;
}

/** What an argv-form job's shellArgv runs (sh -c 'exec "$@"' sh <command...>): its command, else undefined. */
function argvFormCommand(argv: string[]): string[] | undefined {
  const [sh, c, script, name] = argv;
  return argv.length > 4 && sh === "sh" && c === "-c" && script === EXEC_ARGS && name === "sh" ? argv.slice(4) : undefined;
}

/** The prepared shell, given the job's script, when it is alive and the job suits it; else undefined (and it is let go). */
function takeShell(prepared: PreparedShell | undefined, argv: string[], spec: CommandSpec): ChildProcessByStdio<null, Readable, Readable> | undefined {
  if (!prepared) return undefined;
  const { child } = prepared;
  const script = prepared.failed || child.pid === undefined || child.exitCode !== null || child.signalCode !== null ? undefined : shellScript(prepared, argv, spec.env, spec.workDir);
  if (script === undefined) {
    releaseShell(prepared);
    return undefined;
  }
  child.stdin.end(script);
  return child as unknown as ChildProcessByStdio<null, Readable, Readable>;
}

export function shellArgv(spec: CommandSpec): string[] {
  if (spec.script) {
    const file = join(spec.workDir, "hodei-script.sh");
    writeFileSync(file, spec.script.endsWith("\n") ? spec.script : `${spec.script}\n`, { mode: 0o700 });
    return ["sh", file];
  }
  if (spec.command.length === 1) return ["sh", "-c", spec.command[0]];
  return ["sh", "-c", EXEC_ARGS, "sh", ...spec.command];
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

/**
 * Starts the job's command: in the prepared shell when one is given and suits the job (see
 * shellScript), else by a spawn of its own. Either way the job's process is argv's, the leader of
 * its own process group, with the job's environment, working directory and no stdin.
 */
export function startCommand(spec: CommandSpec, onOutput: (stream: string, data: Buffer) => void, prepared?: PreparedShell): RunningCommand {
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
    child = takeShell(prepared, argv, spec) ?? spawn(argv[0], argv.slice(1), {
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
