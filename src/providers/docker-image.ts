/**
 * The default Docker worker image, built offline: no registry, no base image, no Dockerfile build.
 * Its root filesystem is streamed as a tar straight into `docker import` and holds only
 *   /opt/hodei          the agent runtime (see agent-runtime.ts), started with AGENT_COMMAND
 *   /bin/busybox        statically linked, with a /bin symlink per applet (sh included) and /usr/bin/env
 *   /etc/passwd, /etc/group (root), /etc/ssl/certs/ca-certificates.crt (the host's, when it has one)
 *   /tmp (mode 1777), /work (the working directory), /root
 *
 * Invariants: the image carries the label io.hodei.build-hash, a hash of everything that goes in
 * (runtime, busybox, CA bundle, labels, this recipe); buildWorkerImage returns at once when the tag
 * already has that hash, and otherwise replaces the tag. Nothing here starts containers.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import type Dockerode from "dockerode";
import { abortAfter } from "../core/abort.js";
import { AGENT_COMMAND, AGENT_ROOT, readRuntimeHash } from "./agent-runtime.js";
import { inspectImage } from "./docker-pull.js";
import { type TarEntry, tarStream } from "./tar.js";

export { AGENT_COMMAND, AGENT_ROOT, assembleAgentRuntime, buildAgentSnapshot, NODE_COMMAND, recordSnapshotNode } from "./agent-runtime.js";
/** hodei-worker:<package version> (core/worker-image.ts says why never latest). */
export { DEFAULT_WORKER_IMAGE } from "../core/worker-image.js";
export const BUILD_HASH_LABEL = "io.hodei.build-hash";
/** Bump when the image layout or config below changes, so existing images are rebuilt. */
const RECIPE_VERSION = "hodei-worker-image/2";
const CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
const WORKER_PATH = "/usr/local/bin:/usr/bin:/bin";

/** Where `hodei image build` and the server keep the agent runtime. */
export function defaultRuntimeDir(dataDir: string): string {
  return join(dataDir, "agent-runtime");
}

export interface BuildWorkerImageOptions {
  /** Image reference to create or replace, e.g. DEFAULT_WORKER_IMAGE. */
  tag: string;
  /** An assembled agent runtime (assembleAgentRuntime). */
  runtimeDir: string;
  /** A statically linked busybox. Default /bin/busybox. */
  busyboxPath?: string;
  /** Extra image labels (part of the build hash). Default none. */
  labels?: Record<string, string>;
  /** Gives up every daemon call of the build (a daemon that answers pings but stalls on images). */
  signal?: AbortSignal;
}

export interface WorkerImage {
  tag: string;
  id: string;
  /** False when the tag was already up to date. */
  built: boolean;
  sizeBytes: number;
  seconds: number;
}

export async function buildWorkerImage(docker: Dockerode, options: BuildWorkerImageOptions): Promise<WorkerImage> {
  const startedMs = performance.now();
  const { tag, runtimeDir, busyboxPath = "/bin/busybox", labels = {}, signal } = options;
  const runtimeHash = await readRuntimeHash(runtimeDir);
  if (!runtimeHash) throw new Error(`worker image: no agent runtime in ${runtimeDir}: assemble it first (hodei image build does)`);
  const caBundle = (await isFile(CA_BUNDLE)) ? CA_BUNDLE : null;
  const hash = await imageHash(runtimeHash, busyboxPath, caBundle, labels);

  const existing = await findImage(docker, tag, signal);
  const result = (image: Dockerode.ImageInspectInfo, built: boolean): WorkerImage => ({
    tag, id: image.Id, built, sizeBytes: image.Size, seconds: (performance.now() - startedMs) / 1000,
  });
  if (existing?.Config?.Labels?.[BUILD_HASH_LABEL] === hash) return result(existing, false);

  const entries = [...(await busyboxRootfs(busyboxPath)), ...baseEntries(caBundle), ...(await runtimeEntries(runtimeDir))];
  await importRootfs(docker, {
    tag,
    entries,
    changes: [
      `ENV PATH=${WORKER_PATH}`,
      "WORKDIR /work",
      `CMD ${JSON.stringify(AGENT_COMMAND)}`,
      ...labelChanges({ ...labels, [BUILD_HASH_LABEL]: hash }),
    ],
    signal,
  });
  const image = await findImage(docker, tag, signal);
  if (image?.Config?.Labels?.[BUILD_HASH_LABEL] !== hash) {
    throw new Error(`worker image: ${tag} was imported but does not carry ${BUILD_HASH_LABEL}=${hash}; is another build replacing it?`);
  }
  if (existing && existing.Id !== image.Id) await removeUnusedImage(docker, existing.Id, signal);
  return result(image, true);
}

/** Imports a root filesystem as a one-layer image named tag. changes are Dockerfile lines (ENV, CMD, LABEL, ...). */
export async function importRootfs(docker: Dockerode, options: { tag: string; entries: TarEntry[]; changes: string[]; signal?: AbortSignal }): Promise<void> {
  const tar = tarStream(options.entries);
  const tarFailed = new AbortController();
  let tarError: Error | undefined;
  tar.on("error", (err) => {
    tarError = err;
    tarFailed.abort(err);
  });
  // The request ends when the tar fails or the caller gives up.
  const abort = abortAfter(undefined, options.signal, tarFailed.signal);
  try {
    const progress = await docker.importImage(tar, { ...splitTag(options.tag), changes: options.changes, abortSignal: abort.signal });
    await readProgress(progress);
  } catch (err) {
    const cause = tarError ?? (options.signal?.aborted ? (options.signal.reason as Error) : (err as Error));
    throw new Error(`docker: import ${options.tag}: ${cause.message}`, { cause });
  } finally {
    abort.dispose();
  }
}

/** busybox at /bin/busybox and one /bin symlink per applet it lists (sh among them): a whole image on its own. */
export async function busyboxRootfs(busyboxPath: string): Promise<TarEntry[]> {
  const applets = await busyboxApplets(busyboxPath);
  return [
    { type: "dir", path: "bin", mode: 0o755 },
    { type: "file", path: "bin/busybox", mode: 0o755, source: busyboxPath },
    ...applets.map((name): TarEntry => ({ type: "symlink", path: `bin/${name}`, target: "busybox" })),
  ];
}

async function busyboxApplets(busyboxPath: string): Promise<string[]> {
  const run = promisify(execFile);
  const hint = `install busybox-static (apt-get install busybox-static) or pass another busyboxPath`;
  let list: string;
  try {
    list = (await run(busyboxPath, ["--list"])).stdout;
  } catch (err) {
    throw new Error(`worker image: cannot run ${busyboxPath} --list (${(err as Error).message}): ${hint}`, { cause: err });
  }
  // A dynamically linked busybox would not run in an image without libc.
  const ldd = await run("ldd", [busyboxPath]).then((r) => r.stdout, () => "");
  if (ldd.includes("=>")) throw new Error(`worker image: ${busyboxPath} is dynamically linked: ${hint}`);
  const applets = list.split("\n").map((s) => s.trim()).filter((name) => /^[\w.[\]-]+$/.test(name) && name !== "busybox");
  if (!applets.includes("sh")) throw new Error(`worker image: ${busyboxPath} has no sh applet: ${hint}`);
  return applets;
}

function baseEntries(caBundle: string | null): TarEntry[] {
  const entries: TarEntry[] = [
    { type: "dir", path: "usr", mode: 0o755 },
    { type: "dir", path: "usr/bin", mode: 0o755 },
    { type: "symlink", path: "usr/bin/env", target: "/bin/busybox" },
    { type: "dir", path: "usr/local", mode: 0o755 },
    { type: "dir", path: "usr/local/bin", mode: 0o755 },
    { type: "dir", path: "etc", mode: 0o755 },
    { type: "file", path: "etc/passwd", mode: 0o644, source: Buffer.from("root:x:0:0:root:/root:/bin/sh\n") },
    { type: "file", path: "etc/group", mode: 0o644, source: Buffer.from("root:x:0:\n") },
    { type: "dir", path: "root", mode: 0o700 },
    { type: "dir", path: "tmp", mode: 0o1777 },
    { type: "dir", path: "work", mode: 0o755 },
  ];
  if (caBundle) {
    entries.push({ type: "dir", path: "etc/ssl", mode: 0o755 }, { type: "dir", path: "etc/ssl/certs", mode: 0o755 });
    entries.push({ type: "file", path: CA_BUNDLE.slice(1), mode: 0o644, source: caBundle });
  }
  return entries;
}

/** The runtime directory under AGENT_ROOT, file modes kept, dotfiles (.hash) left out. */
async function runtimeEntries(runtimeDir: string): Promise<TarEntry[]> {
  const root = AGENT_ROOT.slice(1);
  const entries: TarEntry[] = [{ type: "dir", path: "opt", mode: 0o755 }, { type: "dir", path: root, mode: 0o755 }];
  const walk = async (dir: string, inImage: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith(".")) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        entries.push({ type: "dir", path: `${inImage}/${entry.name}`, mode: 0o755 });
        await walk(path, `${inImage}/${entry.name}`);
      } else {
        entries.push({ type: "file", path: `${inImage}/${entry.name}`, mode: (await stat(path)).mode & 0o777, source: path });
      }
    }
  };
  await walk(runtimeDir, root);
  return entries;
}

async function imageHash(runtimeHash: string, busyboxPath: string, caBundle: string | null, labels: Record<string, string>): Promise<string> {
  const hash = createHash("sha256").update(`${RECIPE_VERSION}\n${runtimeHash}\n`);
  for (const file of [busyboxPath, caBundle]) {
    if (file) for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    hash.update("\n");
  }
  hash.update(JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b))));
  return hash.digest("hex");
}

function labelChanges(labels: Record<string, string>): string[] {
  return Object.entries(labels).map(([key, value]) => {
    if (!/^[\w.\-/]+$/.test(key)) throw new Error(`worker image: invalid label key "${key}" (letters, digits, . - _ /)`);
    return `LABEL ${key}=${JSON.stringify(value)}`;
  });
}

/** "repo:tag" -> { repo, tag }; a reference without a tag means latest (a ":" before the last "/" is a registry port). */
function splitTag(reference: string): { repo: string; tag: string } {
  const colon = reference.lastIndexOf(":");
  if (colon > reference.lastIndexOf("/")) return { repo: reference.slice(0, colon), tag: reference.slice(colon + 1) };
  return { repo: reference, tag: "latest" };
}

/** The image named tag, or null when there is none. */
async function findImage(docker: Dockerode, tag: string, signal?: AbortSignal): Promise<Dockerode.ImageInspectInfo | null> {
  try {
    return await inspectImage(docker, tag, signal);
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw new Error(`docker: inspect image ${tag}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads an import's progress messages to the end; a message with an error fails the import. */
async function readProgress(stream: NodeJS.ReadableStream): Promise<void> {
  let text = "";
  for await (const chunk of stream) text += chunk.toString();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const message = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
    if (message.error) throw new Error(message.errorDetail?.message ?? message.error);
  }
}

/**
 * Removes the image a rebuild untagged, unless something still uses it: a container (Docker
 * refuses that without force, which is what we want), or a tag left on it. Docker does not refuse
 * the last tag: removing by id untags and deletes an image whose only tag is, say, one a user gave
 * it (`docker tag hodei-worker:0.1.0 hodei-worker:mine`). Optional cleanup, so a refusal is not an error.
 */
async function removeUnusedImage(docker: Dockerode, id: string, signal?: AbortSignal): Promise<void> {
  const image = await findImage(docker, id, signal).catch(() => null);
  if (!image || (image.RepoTags ?? []).some((t) => t !== "<none>:<none>")) return;
  await docker.getImage(id).remove({ abortSignal: signal }).catch(() => undefined);
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isFile(), () => false);
}
