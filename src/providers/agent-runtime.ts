/**
 * The agent runtime: a directory that lets the agent run inside any image that has a shell, with
 * or without glibc or node. It holds the host's node binary, every shared library node links
 * (found with `ldd`), the dynamic loader and the bundled agent, in the layout every worker uses:
 *
 *   bin/node                     the host's node (process.execPath, symlinks resolved)
 *   lib/<each library ldd lists> copied with symlinks followed, under the name node asks for
 *   lib/ld-linux-x86-64.so.2     the loader; running node through it needs no glibc in the image
 *   agent.cjs                    the agent (dist/agent.cjs), which runs the bundle beside it
 *   agent-main.cjs               the agent's bundle (copied when it is beside agentPath)
 *   agent-snapshot.cjs           the entry of the startup snapshot (scripts/agent-snapshot.cjs:
 *                                snapshotEntryPath, by default the one beside agentPath)
 *   agent.blob                   the startup snapshot, built here by bin/node itself: the bundle
 *                                evaluated and warmed up (without a bundle, its main runs agent.cjs)
 *   .hash                        hash of the inputs (written last): the agent's files by content,
 *                                node and its libraries by identity (path, size; node also inode and times)
 *
 * Inside a worker it sits at AGENT_ROOT, and the worker's command is AGENT_COMMAND: node started
 * from the snapshot, which saves a cold worker the bundle's load (bench/agent-boot.ts).
 *
 * Invariants: a directory with a .hash is complete. assembleAgentRuntime does nothing when .hash
 * matches the inputs, and otherwise builds a temporary sibling and renames it into place, so a
 * reader never sees a half-built runtime. Gotcha for the agent: run through the loader,
 * process.execPath is the loader, so child_process.fork breaks; spawn with explicit argv instead.
 */
import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, readFileSync, realpathSync, statSync } from "node:fs";
import { chmod, copyFile, mkdir, readFile, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";

export const AGENT_ROOT = "/opt/hodei";
const LOADER_NAME = "ld-linux-x86-64.so.2";

/** Node through the runtime's own loader and libraries (add node's arguments). Frozen. */
export const NODE_COMMAND = Object.freeze([`${AGENT_ROOT}/lib/${LOADER_NAME}`, "--library-path", `${AGENT_ROOT}/lib`, `${AGENT_ROOT}/bin/node`]) as string[];

/**
 * How every worker starts the agent: node from the runtime's startup snapshot.
 * Frozen (mutating it throws), but typed string[] so it can be handed to Docker's Cmd/Entrypoint as is.
 */
export const AGENT_COMMAND = Object.freeze([...NODE_COMMAND, "--snapshot-blob", `${AGENT_ROOT}/agent.blob`]) as string[];

/** Bump when the layout changes, so existing runtimes are rebuilt. */
const LAYOUT_VERSION = "hodei-agent-runtime/3";

/** What dist/agent.cjs starts, beside it: the bundle (scripts/agent-loader.cjs). Copied when present. */
const AGENT_COMPANIONS = ["agent-main.cjs"];
const SNAPSHOT_ENTRY = "agent-snapshot.cjs";
const SNAPSHOT_BLOB = "agent.blob";
const HASH_FILE = ".hash";
/** Building the snapshot takes about a second; a node that hangs must not hold the assembly for ever. */
const SNAPSHOT_BUILD_TIMEOUT_MS = 60_000;

export interface AgentRuntimeOptions {
  /** Where the runtime goes (e.g. <data dir>/agent-runtime); created with its parents. */
  targetDir: string;
  /** The node binary to copy, usually process.execPath. */
  nodePath: string;
  /** The bundled agent, dist/agent.cjs. */
  agentPath: string;
  /** The snapshot's entry, dist/agent-snapshot.cjs. Default: agent-snapshot.cjs beside agentPath. */
  snapshotEntryPath?: string;
}

/** A shared object to copy: its name inside lib/ and the host file it comes from. */
interface Library {
  name: string;
  path: string;
}

/** Builds the runtime in targetDir unless it is already up to date. Returns its absolute path and hash. */
export async function assembleAgentRuntime(options: AgentRuntimeOptions): Promise<{ dir: string; hash: string }> {
  const dir = resolve(options.targetDir);
  const nodePath = await realpath(options.nodePath);
  await requireFile(options.agentPath, "build it with `npm run build`");
  const libraries = await sharedLibraries(nodePath);
  const agentFiles = await agentFilesOf(options.agentPath, options.snapshotEntryPath ?? join(dirname(options.agentPath), SNAPSHOT_ENTRY));
  const hash = await runtimeHash(nodePath, agentFiles, libraries);
  if ((await readRuntimeHash(dir)) === hash) return { dir, hash };

  const staging = `${dir}.tmp-${randomUUID().slice(0, 8)}`;
  try {
    await writeRuntime(staging, nodePath, agentFiles, libraries, hash);
    await moveIntoPlace(staging, dir, hash);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return { dir, hash };
}

/** The hash of an assembled runtime, or null when dir holds none. */
export async function readRuntimeHash(dir: string): Promise<string | null> {
  try {
    return (await readFile(join(dir, HASH_FILE), "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** The libraries `ldd` resolves for node, the loader last (also under its fixed name). */
export async function sharedLibraries(nodePath: string): Promise<Library[]> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)("ldd", [nodePath]));
  } catch (err) {
    const detail = (err as { stderr?: string; stdout?: string; message: string }).stdout || (err as Error).message;
    throw new Error(`agent runtime: \`ldd ${nodePath}\` failed (${detail.trim()}); the runtime needs a dynamically linked glibc node and ldd (package libc-bin)`, { cause: err });
  }
  return parseLdd(stdout, nodePath);
}

/** Parses `ldd` output: "name => /path (0x..)" lines and the "/path/ld-linux-*.so.* (0x..)" loader line. */
export function parseLdd(output: string, nodePath: string): Library[] {
  const libraries: Library[] = [];
  let loader: string | undefined;
  for (const line of output.split("\n").map((l) => l.trim())) {
    const linked = /^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/.exec(line);
    if (linked) {
      if (linked[2] === "not found") throw new Error(`agent runtime: ${nodePath} needs ${linked[1]}, which is not installed on this host: install it and retry`);
      if (linked[2].startsWith("/")) libraries.push({ name: linked[1], path: linked[2] });
    } else if (/^\/\S*\/ld-linux[^/\s]*\.so\.\d+ \(0x/.test(line)) {
      loader = line.split(" ")[0];
    }
  }
  if (!loader) throw new Error(`agent runtime: ldd found no glibc loader for ${nodePath}; the runtime needs a dynamically linked glibc node`);
  libraries.push({ name: basename(loader), path: loader });
  // libc asks for the loader by its own name; the command runs it by the fixed one.
  if (basename(loader) !== LOADER_NAME) libraries.push({ name: LOADER_NAME, path: loader });
  return libraries;
}

/** The agent's files: agentPath as agent.cjs, its companions found beside it under their own names, and the snapshot's entry. */
async function agentFilesOf(agentPath: string, snapshotEntryPath: string): Promise<{ name: string; path: string }[]> {
  const files = [{ name: "agent.cjs", path: agentPath }];
  for (const name of AGENT_COMPANIONS) {
    const path = join(dirname(agentPath), name);
    if (await stat(path).then((s) => s.isFile(), () => false)) files.push({ name, path });
  }
  await requireFile(snapshotEntryPath, "it is dist/agent-snapshot.cjs of `npm run build`");
  files.push({ name: SNAPSHOT_ENTRY, path: snapshotEntryPath });
  return files;
}

/**
 * Builds the agent's startup snapshot at blob with node, from entry (dist/agent-snapshot.cjs, which
 * takes the bundle beside it), in two runs (scripts/agent-snapshot.cjs says why). Only that node
 * binary can start from it: any other refuses it. Throws with node's own words when it cannot.
 */
export async function buildAgentSnapshot(node: string, entry: string, blob: string): Promise<void> {
  // An environment of its own: nothing of this process's (NODE_OPTIONS, say) may change what the snapshot holds.
  const run = promisify(execFile);
  const options = { env: {}, timeout: SNAPSHOT_BUILD_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 };
  try {
    const { stdout: lazyKeys } = await run(node, [entry, "--lazy-keys"], options);
    await run(node, ["--snapshot-blob", blob, "--build-snapshot", entry], { ...options, env: { HODEI_SNAPSHOT_LAZY_KEYS: lazyKeys } });
  } catch (err) {
    const detail = ((err as { stderr?: string }).stderr || (err as Error).message).trim().split("\n").slice(0, 12).join("\n");
    throw new Error(`agent runtime: building the agent's startup snapshot with ${node} failed: ${detail}`, { cause: err });
  }
}

/**
 * Which node binary a path names: its real path, device, inode, size, mtime and ctime. A binary
 * replaced (a new inode) or rewritten in place (new times) is another. Reading its ~100 MB instead
 * cost 130 to 185 ms on every server start (the runtime's hash below).
 */
function nodeIdentity(nodePath: string): string {
  const real = realpathSync(nodePath);
  const { dev, ino, size, mtimeMs, ctimeMs } = statSync(real);
  return `${real} ${dev} ${ino} ${size} ${mtimeMs} ${ctimeMs}`;
}

/**
 * Local workers' snapshot: dist/agent.blob, built by `npm run build` with the build's node, and
 * beside it agent.blob.json, which names that node (nodeIdentity). Only that binary can start from
 * the blob, so a local worker uses it only when nodePath is the same binary (checked by
 * localSnapshotFor); otherwise it runs agentPath as before.
 */
interface SnapshotNode {
  node: string;
}

/** Writes blob's record of the node that built it (see SnapshotNode). */
export async function recordSnapshotNode(blob: string, node: string): Promise<void> {
  const record: SnapshotNode = { node: nodeIdentity(node) };
  await writeFile(`${blob}.json`, `${JSON.stringify(record)}\n`);
}

/**
 * The startup snapshot beside agentPath (agent.blob) when it was built by nodePath's binary, for
 * local workers to start from (`node --snapshot-blob`); undefined otherwise: no blob or record, or
 * another node (a snapshot is refused by any other binary: the worker would not start).
 */
export function localSnapshotFor(agentPath: string, nodePath: string): string | undefined {
  const blob = join(dirname(agentPath), SNAPSHOT_BLOB);
  try {
    const record = JSON.parse(readFileSync(`${blob}.json`, "utf8")) as SnapshotNode;
    return record.node === nodeIdentity(nodePath) && statSync(blob).isFile() ? blob : undefined;
  } catch {
    return undefined;
  }
}

/** sha256 over the layout version, node's identity (nodeIdentity), each agent file's name and bytes, and each library's name, real path and size. */
async function runtimeHash(nodePath: string, agentFiles: { name: string; path: string }[], libraries: Library[]): Promise<string> {
  const hash = createHash("sha256").update(`${LAYOUT_VERSION}\n`);
  hash.update(`node ${nodeIdentity(nodePath)}\n`); // by identity, as the libraries below
  for (const file of agentFiles) {
    hash.update(`${file.name}\n`);
    for await (const chunk of createReadStream(file.path)) hash.update(chunk as Buffer);
    hash.update("\n");
  }
  for (const lib of libraries) {
    const [real, { size }] = await Promise.all([realpath(lib.path), stat(lib.path)]);
    hash.update(`${lib.name} ${real} ${size}\n`);
  }
  return hash.digest("hex");
}

async function writeRuntime(dir: string, nodePath: string, agentFiles: { name: string; path: string }[], libraries: Library[], hash: string): Promise<void> {
  await mkdir(join(dir, "bin"), { recursive: true });
  await mkdir(join(dir, "lib"));
  await copyFile(nodePath, join(dir, "bin", "node"));
  await chmod(join(dir, "bin", "node"), 0o755);
  for (const lib of libraries) {
    await copyFile(lib.path, join(dir, "lib", lib.name)); // copyFile follows symlinks
    await chmod(join(dir, "lib", lib.name), 0o755); // the loader is executed; the rest as Debian ships them
  }
  for (const file of agentFiles) {
    await copyFile(file.path, join(dir, file.name));
    await chmod(join(dir, file.name), 0o644);
  }
  // With dir's own node: the binary workers run (any other refuses the snapshot).
  await buildAgentSnapshot(join(dir, "bin", "node"), join(dir, SNAPSHOT_ENTRY), join(dir, SNAPSHOT_BLOB));
  await chmod(join(dir, SNAPSHOT_BLOB), 0o644);
  await writeFile(join(dir, HASH_FILE), `${hash}\n`); // last: its presence means complete
}

/**
 * Renames the finished staging directory to dir. Danger zone: replacing an older runtime takes two
 * renames (old aside, new in), so for an instant dir is missing, never half-built; the old one is
 * then deleted, which containers that mounted it notice only if they start node again.
 */
async function moveIntoPlace(staging: string, dir: string, hash: string): Promise<void> {
  if (await renameIfFree(staging, dir)) return;
  if ((await readRuntimeHash(dir)) === hash) return; // a concurrent assembly finished first
  const old = `${dir}.old-${randomUUID().slice(0, 8)}`;
  await rename(dir, old).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
  const isPlaced = await renameIfFree(staging, dir);
  await rm(old, { recursive: true, force: true });
  if (!isPlaced && (await readRuntimeHash(dir)) !== hash) {
    throw new Error(`agent runtime: another process replaced ${dir} with a different runtime while this one was assembled; retry`);
  }
}

/** rename(), or false when the destination is an existing non-empty directory. */
async function renameIfFree(from: string, to: string): Promise<boolean> {
  try {
    await rename(from, to);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOTEMPTY" || code === "EEXIST") return false;
    throw err;
  }
}

async function requireFile(path: string, hint: string): Promise<void> {
  try {
    if (!(await stat(path)).isFile()) throw new Error("not a file");
  } catch (err) {
    throw new Error(`agent runtime: ${path} is missing: ${hint}`, { cause: err });
  }
}
