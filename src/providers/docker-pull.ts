/**
 * A job's image on the Docker host, by its pull policy, before its container is created:
 *   always          pull first, whatever the host has (a pull that fails ends the attempt);
 *   if-not-present  pull only when the host does not have it;
 *   never           use the host's copy; none is a permanent failure at once.
 *
 * A pull that fails says so, with the daemon's or the registry's own error. Whether a retry can
 * help decides its kind: the registry not answering (connection refused or reset, a timeout, 429 or
 * a 5xx: a registry restarting, overloaded or rate-limiting) is an ordinary failure, retried with
 * backoff while the job has attempts left; anything else (no such image or tag, access denied, a
 * name that does not resolve, which is far more often a misspelt registry than a DNS outage, a bad
 * reference) is a PermanentError: the same pull would fail the same way. A daemon that does not
 * answer at all is an UnavailableError (the provider is down; the job waits).
 */
import type Dockerode from "dockerode";
import { PermanentError, UnavailableError } from "../core/errors.js";
import type { PullPolicy } from "../core/placement.js";

/** Registry failures a later try may not meet (the registry restarting, overloaded, rate-limiting). */
const TRANSIENT = /connection refused|connection reset|i\/o timeout|timed? ?out|TLS handshake timeout|no route to host|network is unreachable|temporary failure|toomanyrequests|too many requests|\b(429|502|503|504)\b|bad gateway|service unavailable|unexpected EOF/i;

/** What ensureImage did: "present" (the host's copy, no pull) or "pulled". */
export type ImageSource = "present" | "pulled";

/** Makes `image` available on the host as `policy` says, or throws why it cannot be. */
export async function ensureImage(docker: Dockerode, image: string, policy: PullPolicy, signal?: AbortSignal): Promise<ImageSource> {
  if (policy !== "always") {
    if (await isPresent(docker, image, signal)) return "present";
    if (policy === "never") {
      throw new PermanentError(`image ${image} is not on the Docker host and the job's pull policy is never: pull or build it there first, or submit with --pull if-not-present`);
    }
  }
  await pull(docker, image, signal);
  return "pulled";
}

/**
 * docker image inspect that a signal can cut off: dockerode's Image.inspect drops an abortSignal,
 * so a daemon that answers pings but stalls on images held its caller for ever. Rejects with the
 * daemon's error (statusCode 404 for a missing image), or the signal's reason once it aborts.
 */
export function inspectImage(docker: Dockerode, image: string, signal?: AbortSignal): Promise<Dockerode.ImageInspectInfo> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      { path: `/images/${image}/json`, method: "GET", abortSignal: signal, statusCodes: { 200: true, 404: "no such image", 500: "server error" }, options: {} },
      (err: unknown, data: unknown) => (err ? reject(signal?.aborted ? signal.reason : err) : resolve(data as Dockerode.ImageInspectInfo)),
    );
  });
}

async function isPresent(docker: Dockerode, image: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await inspectImage(docker, image, signal);
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    if (signal?.aborted) throw signal.reason;
    throw daemonError(`inspect image ${image}`, err);
  }
}

/** docker pull: the create call fails for an unreachable registry; later errors come in the progress stream. */
async function pull(docker: Dockerode, image: string, signal?: AbortSignal): Promise<void> {
  let stream: NodeJS.ReadableStream;
  try {
    stream = (await docker.pull(image, signal ? { abortSignal: signal } : {})) as NodeJS.ReadableStream;
  } catch (err) {
    throw signal?.aborted ? signal.reason : pullError(image, err);
  }
  const streamError = await readProgress(stream);
  // Given up by the caller (the start's time limit): its reason, not the cut stream's.
  if (signal?.aborted) throw signal.reason;
  if (streamError) throw pullError(image, new Error(streamError));
}

/** Reads the pull's progress to its end; the last error it reports, or "" when it succeeded. */
function readProgress(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let buffer = "";
    let error = "";
    const take = (line: string) => {
      if (!line.trim()) return;
      try {
        const event = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
        if (event.error || event.errorDetail?.message) error = event.errorDetail?.message || event.error || "";
      } catch {
        // Not a progress event: ignored.
      }
    };
    stream.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        take(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
      }
    });
    stream.on("error", (err: Error) => resolve(error || err.message));
    stream.on("end", () => {
      take(buffer);
      resolve(error);
    });
    // After "end" this changes nothing (the first resolve wins); without one, the pull was cut off.
    stream.on("close", () => resolve(error || "the daemon closed the pull's progress stream before it ended"));
  });
}

/** The daemon's own message ({"message": ...} of an HTTP error, or the error's without docker-modem's "(HTTP code 500) server error - "). */
function messageOf(err: unknown): string {
  const json = (err as { json?: { message?: string } } | undefined)?.json;
  const message = json?.message || (err as Error)?.message || String(err);
  return message.replace(/^\(HTTP code \d+\) [^-]*- /, "").trim();
}

function isDaemonDown(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === "ECONNREFUSED" || code === "ENOENT" || code === "EACCES" || code === "ECONNRESET";
}

function daemonError(what: string, err: unknown): Error {
  if (isDaemonDown(err)) return new UnavailableError(`docker: ${what}: ${(err as Error).message}`);
  return new Error(`docker: ${what}: ${messageOf(err)}`, { cause: err });
}

/** A failed pull, as permanent unless the registry merely did not answer. */
export function pullError(image: string, err: unknown): Error {
  if (isDaemonDown(err)) return new UnavailableError(`docker: pull ${image}: the Docker daemon did not answer: ${(err as Error).message}`);
  const message = messageOf(err);
  if (TRANSIENT.test(message)) {
    return new Error(`docker: pull ${image} failed: ${message} (the registry did not answer; the attempt is retried while the job has attempts left)`, { cause: err });
  }
  return new PermanentError(`docker: pull ${image} failed: ${message}`);
}
