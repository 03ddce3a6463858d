/**
 * The launcher: a small Node process that starts the local provider's agents, so that the control
 * plane itself never forks (a forkserver, as Python's multiprocessing and Chromium's zygote have).
 *
 * Node's spawn is fork + exec. A fork copies the page tables of the whole control plane (tens of ms
 * on its event loop for a server of 150 MB here) and marks every page copy-on-write, so each page
 * the server writes afterwards faults and is copied: on a virtual machine, 12 µs a page. A refill
 * of the warm pool after every job made the job's own log ingest pay that (its SQLite writes took
 * 65 to 120 ms of CPU per 6.9 MB against 10 to 35 without a fork). The launcher is forked once,
 * when the server starts (or on first use), and only it forks afterwards.
 *
 * It reads requests on stdin and answers on stdout, one JSON object per line:
 *   {op:"spawn", id, file, args, cwd, env, log}  -> {id, pid} | {id, error, code}
 *   {op:"input", pid, data}                       the agent's stdin gets data and is closed
 *   (on its own)                                  {exit: pid, code, signal} when an agent exits
 * An agent's stdout and stderr go to its log file (opened by the launcher, appending). The launcher
 * ignores SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole process group) and exits when
 * its stdin closes, so it lives exactly as long as the control plane; its idle agents then see their
 * stdin close and exit, as they did with the control plane as their parent.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";

/** The launcher's program, run as `node -e` (nothing to build, nothing to find on disk). */
const LAUNCHER_SOURCE = `
process.title = "hodei-launcher";
const { spawn } = require("node:child_process");
const { openSync, closeSync } = require("node:fs");
const children = new Map();
const send = (message) => process.stdout.write(JSON.stringify(message) + "\\n");
const refuse = (id, err) => send({ id, error: String((err && err.message) || err), code: (err && err.code) || "" });
process.on("SIGINT", () => {});
process.on("SIGTERM", () => {});
process.stdout.on("error", () => process.exit(0));
require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
  let m;
  try { m = JSON.parse(line); } catch { return; }
  if (m.op === "spawn") {
    let fd;
    try { fd = openSync(m.log, "a"); } catch (err) { return refuse(m.id, err); }
    let child;
    try {
      child = spawn(m.file, m.args, { cwd: m.cwd, env: m.env, detached: true, stdio: ["pipe", fd, fd] });
    } catch (err) {
      return refuse(m.id, err);
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) {
      child.once("error", (err) => refuse(m.id, err));
      return;
    }
    const pid = child.pid;
    child.on("error", () => {});
    child.stdin.on("error", () => {});
    children.set(pid, child);
    child.once("exit", (code, signal) => { children.delete(pid); send({ exit: pid, code, signal }); });
    send({ id: m.id, pid });
  } else if (m.op === "input") {
    const child = children.get(m.pid);
    if (child) child.stdin.end(m.data || undefined);
  }
}).on("close", () => process.exit(0));
`;

export interface LaunchRequest {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** The agent's stdout and stderr are appended here. */
  logPath: string;
}

/**
 * An agent the launcher started. Emits "exit" (code, signal) once, when the launcher reports it;
 * if the launcher itself is lost first, `isLost` is set and no exit will come from it.
 */
export class LaunchedAgent extends EventEmitter {
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  isLost = false;

  constructor(
    readonly pid: number,
    private readonly launcher: ChildProcess,
  ) {
    super();
  }

  /**
   * Writes data to the agent's stdin and closes it ("" only closes it: an idle agent then exits).
   * Through the launcher that started it, only: once that one is gone, so is the agent's stdin.
   */
  input(data: string): void {
    if (!this.isLost) writeLine(this.launcher, { op: "input", pid: this.pid, data });
  }

  /** Whether `launcher` started it. */
  isFrom(launcher: ChildProcess): boolean {
    return this.launcher === launcher;
  }
}

type Reply = { id: number; pid: number } | { id: number; error: string; code: string } | { exit: number; code: number | null; signal: NodeJS.Signals | null };

export class AgentLauncher {
  private child: ChildProcess | null = null;
  private nextId = 1;
  /** Launches waiting for their answer, each from the launcher it was sent to. */
  private readonly pending = new Map<number, { resolve: (agent: LaunchedAgent) => void; reject: (err: Error) => void; sentAtMs: number; launcher: ChildProcess }>();
  private readonly agents = new Map<number, LaunchedAgent>();
  /** Why the last launcher ended before it was closed; "" while none did, or once a new one answered. */
  lostReason = "";

  /**
   * @param nodePath  the node binary that runs the launcher itself
   * @param onLost    called with the agents whose exit will never be reported (their launcher is gone)
   * @param nowMs     the clock that dates requests (oldestWaitMs)
   */
  constructor(
    private readonly nodePath: string,
    private readonly onLost: (agents: LaunchedAgent[]) => void,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** How long the oldest unanswered launch has waited, ms (0 when none waits): a stopped launcher answers none. */
  oldestWaitMs(): number {
    let oldest = Infinity;
    for (const waiting of this.pending.values()) oldest = Math.min(oldest, waiting.sentAtMs);
    return oldest === Infinity ? 0 : this.nowMs() - oldest;
  }

  /** The launcher's pid, while one runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts an agent; rejects with the system's reason (ENOENT, EAGAIN, ...) when it cannot be created. */
  launch(request: LaunchRequest): Promise<LaunchedAgent> {
    const id = this.nextId++;
    this.prepare();
    const launcher = this.child!;
    const promise = new Promise<LaunchedAgent>((resolve, reject) => this.pending.set(id, { resolve, reject, sentAtMs: this.nowMs(), launcher }));
    writeLine(launcher, { op: "spawn", id, file: request.file, args: request.args, cwd: request.cwd, env: request.env, log: request.logPath });
    this.holdLoop(launcher);
    return promise;
  }

  /** Starts the launcher now if none runs, so that the first launch does not wait for its boot. */
  prepare(): void {
    this.child ??= this.startLauncher();
  }

  /** Ends the launcher: it exits, and the agents it holds an open stdin of (the idle ones) with it. */
  close(): void {
    const child = this.child;
    this.child = null;
    child?.stdin?.end();
  }

  private startLauncher(): ChildProcess {
    // Nothing of the server's environment: each agent's environment comes with its request.
    const child = spawn(this.nodePath, ["-e", LAUNCHER_SOURCE], { env: {}, stdio: ["pipe", "pipe", "inherit"] });
    // A failed spawn (no pid) ends with 'error' and no 'exit'; a launcher that ran ends with 'exit'.
    child.once("error", (err) => this.lose(child, `could not start the launcher (${this.nodePath}): ${err.message}`));
    child.once("exit", (code, signal) => this.lose(child, `the launcher exited (${signal ?? `code ${code}`})`));
    child.stdin?.on("error", () => {}); // a launcher gone: its exit is handled above
    createInterface({ input: child.stdout! }).on("line", (line) => this.receive(child, line));
    child.unref();
    return child;
  }

  private receive(child: ChildProcess, line: string): void {
    let reply: Reply;
    try {
      reply = JSON.parse(line) as Reply;
    } catch {
      return;
    }
    if ("exit" in reply) {
      const agent = this.agents.get(reply.exit);
      if (!agent) return;
      this.agents.delete(reply.exit);
      agent.exit = { code: reply.code, signal: reply.signal };
      agent.emit("exit", reply.code, reply.signal);
      return;
    }
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    this.holdLoop(child);
    if ("pid" in reply) {
      if (child === this.child) this.lostReason = "";
      const agent = new LaunchedAgent(reply.pid, child);
      this.agents.set(reply.pid, agent);
      waiting.resolve(agent);
    } else {
      waiting.reject(Object.assign(new Error(reply.error), { code: reply.code }));
    }
  }

  /** The launcher is gone: what waits for it fails, and its agents' exits will not be reported. */
  private lose(child: ChildProcess, reason: string): void {
    if (this.child === child) {
      this.child = null;
      this.lostReason = reason;
    }
    // Only what went through this launcher: after close(), a new one may already serve.
    for (const [id, waiting] of this.pending) {
      if (waiting.launcher !== child) continue;
      this.pending.delete(id);
      waiting.reject(new Error(reason));
    }
    const lost = [...this.agents.values()].filter((agent) => agent.isFrom(child));
    for (const agent of lost) {
      this.agents.delete(agent.pid);
      agent.isLost = true;
    }
    if (lost.length > 0) this.onLost(lost);
  }

  /**
   * Keeps this process alive while a launch waits for `launcher`'s answer, and only then. The
   * process handle is held, not only the pipe: a launcher that dies closes its stdout before its
   * exit is reaped, and the exit is what fails the launch.
   */
  private holdLoop(launcher: ChildProcess): void {
    let waiting = false;
    for (const entry of this.pending.values()) waiting ||= entry.launcher === launcher;
    const stdout = launcher.stdout as (NodeJS.ReadableStream & { ref?: () => void; unref?: () => void }) | null;
    if (waiting) {
      launcher.ref();
      stdout?.ref?.();
    } else {
      launcher.unref();
      stdout?.unref?.();
    }
  }
}

function writeLine(launcher: ChildProcess, message: object): void {
  launcher.stdin?.write(`${JSON.stringify(message)}\n`);
}
