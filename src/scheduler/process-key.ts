/**
 * Which process a replica is, told apart from every other process that ever runs on the machine:
 * `<boot id>/<pid namespace>/<pid>/<start time>` (Linux: /proc). A replica records its key with its
 * presence row; a replica on the same machine and in the same PID namespace can then tell for sure
 * that the process holding the leader lease is gone (no such pid, another process under its pid,
 * or a zombie), and take the lease over at once instead of waiting for it to expire (a single
 * server restarted after a crash would otherwise wait a whole lease before its leader steps run).
 *
 * Conservative by construction: anything it cannot prove (another machine or boot, another PID
 * namespace such as another container, no /proc, a key it cannot read) counts as alive, and the
 * lease's expiry stays the way on.
 */
import { readFileSync, readlinkSync } from "node:fs";

/** This process's key, or null where it cannot be known (no /proc). */
export function currentProcessKey(): string | null {
  return processKeyOf(process.pid);
}

/** The key of the process `pid` of this machine and PID namespace, or null (gone, or no /proc). */
export function processKeyOf(pid: number): string | null {
  try {
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const pidNamespace = readlinkSync("/proc/self/ns/pid");
    const stat = statOf(pid);
    if (!bootId || !stat) return null;
    return [bootId, pidNamespace, String(pid), stat.startTime].join("/");
  } catch {
    return null;
  }
}

/**
 * True only when `key` names a process of this machine's current boot and of this PID namespace
 * that no longer runs. False when it runs, or when that cannot be known from here.
 */
export function isProcessGone(key: string): boolean {
  const ours = currentProcessKey();
  if (!ours) return false;
  const [bootId, pidNamespace, pidText, startTime] = key.split("/");
  const [ourBootId, ourPidNamespace] = ours.split("/");
  const pid = Number(pidText);
  if (bootId !== ourBootId || pidNamespace !== ourPidNamespace || !Number.isSafeInteger(pid) || pid <= 0 || !startTime) return false;
  const stat = statOf(pid);
  return stat === null || stat.startTime !== startTime || stat.state === "Z" || stat.state === "X";
}

/** State and start time (clock ticks after boot) of a process, from /proc/<pid>/stat; null when there is none. */
function statOf(pid: number): { state: string; startTime: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // Fields 3 (state) and 22 (starttime) of proc(5), counted from after the command name.
  const state = fields[0];
  const startTime = fields[19];
  return state && startTime ? { state, startTime } : null;
}
