/**
 * PodWatch: one watch on our pods that only nudges (the reconcile pass decides), kept alive as real
 * API servers require. A real API server ends every watch after a while (a client's timeoutSeconds,
 * else a randomised --min-request-timeout, 30 to 60 minutes by default), and may answer 410 Gone
 * when the resourceVersion asked for is older than what it keeps.
 *
 * Invariants:
 * - The watch asks for BOOKMARK events (allowWatchBookmarks) and remembers the resourceVersion of
 *   every event and bookmark, so a watch the server closed is resumed from there: no change made
 *   while it was down is missed (the server replays them).
 * - A watch that ended cleanly after delivering something is resumed at once; one that failed, or
 *   ended without a single event, after retryDelayMs (no hot loop against a server that refuses).
 * - 410 Gone (an ERROR event, or the answer to the request): the remembered resourceVersion is
 *   dropped and the next watch starts from now, which sends ADDED for every pod, so every worker is
 *   nudged once and nothing is lost.
 * - BOOKMARKs carry no object change: they move the resourceVersion and nudge nothing.
 * - A watch the server has not answered within connectTimeoutMs is given up and tried again (the
 *   client's own connect limit is lost inside client-node's Watch), and a late answer to it is
 *   closed: an API server or proxy that accepts and never answers costs latency, never the watch.
 */
import * as k8s from "@kubernetes/client-node";

export interface PodWatchOptions {
  kubeConfig: k8s.KubeConfig;
  namespace: string;
  labelSelector: string;
  /** Called with the name of a pod that changed. */
  onChange: (podName: string) => void;
  /** Wait before a watch that failed is tried again, ms. Default 2000. */
  retryDelayMs?: number;
  /** How long a watch may wait for the server's answer before it is tried again, ms. Default 30000. */
  connectTimeoutMs?: number;
  /** Runs `connect` after delayMs; default an unref'd setTimeout. Tests pass their own to hold a restart. */
  schedule?: (connect: () => void, delayMs: number) => void;
}

const DEFAULT_RETRY_DELAY_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;

export class PodWatch {
  private request: AbortController | null = null;
  private isConnecting = false;
  private isClosed = false;
  /** The last resourceVersion seen (an event's or a bookmark's); undefined: start from now. */
  private resourceVersion: string | undefined;
  /** Watches begun, for tests and logs. */
  connections = 0;

  constructor(private readonly options: PodWatchOptions) {}

  /** Starts watching unless a watch is already running. */
  ensure(): void {
    if (this.request || this.isConnecting || this.isClosed) return;
    this.connect();
  }

  close(): void {
    this.isClosed = true;
    this.request?.abort();
    this.request = null;
  }

  /** The resourceVersion the next watch resumes from (undefined: from now). */
  get lastResourceVersion(): string | undefined {
    return this.resourceVersion;
  }

  private connect(): void {
    if (this.isClosed) return;
    this.isConnecting = true;
    this.connections++;
    let delivered = 0;
    let hasEnded = false;
    const { kubeConfig, namespace, labelSelector } = this.options;
    const end = (err: unknown) => {
      if (hasEnded) return;
      hasEnded = true;
      clearTimeout(connectTimer);
      this.request = null;
      this.isConnecting = false;
      if ((err as { statusCode?: number } | null)?.statusCode === 410) this.resourceVersion = undefined;
      if (this.isClosed) return;
      const delayMs = err || delivered === 0 ? (this.options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS) : 0;
      (this.options.schedule ?? defaultSchedule)(() => this.connect(), delayMs);
    };
    const connectTimeoutMs = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const connectTimer = setTimeout(() => end(new Error(`the pod watch got no answer within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    connectTimer.unref();
    const query: Record<string, string | boolean> = { labelSelector, allowWatchBookmarks: true };
    if (this.resourceVersion) query.resourceVersion = this.resourceVersion;
    new k8s.Watch(kubeConfig)
      .watch(
        `/api/v1/namespaces/${namespace}/pods`,
        query,
        (type: string, object: { code?: number; metadata?: { name?: string; resourceVersion?: string } }) => {
          delivered++;
          if (type === "ERROR") {
            // 410: what we asked for is gone from the server's history; start again from now.
            if (object?.code === 410) this.resourceVersion = undefined;
            return;
          }
          const version = object?.metadata?.resourceVersion;
          if (version) this.resourceVersion = version;
          if (type !== "BOOKMARK" && object?.metadata?.name) this.options.onChange(object.metadata.name);
        },
        end,
      )
      .then(
        (request) => {
          clearTimeout(connectTimer);
          if (hasEnded || this.isClosed) {
            // Given up (its answer came too late) or closed meanwhile: another watch runs or none should.
            request.abort();
            return;
          }
          this.isConnecting = false;
          this.request = request;
        },
        end,
      );
  }
}

function defaultSchedule(connect: () => void, delayMs: number): void {
  setTimeout(connect, delayMs).unref();
}
