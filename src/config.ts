/**
 * The only reader of process.env for the control plane (and, through client-config.ts, the CLI).
 * One zod schema, parsed once at start-up; a bad value stops the server with a message naming the
 * variable.
 * Every option states its default and unit.
 */
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { DEFAULT_PULL_POLICY, nodeSelectorProblems, normaliseTolerations, PULL_POLICIES } from "./core/placement.js";
import { DEFAULT_WORKER_IMAGE } from "./core/worker-image.js";
import { parseTracingConfig } from "./tracing-config.js";
import { isLoopbackHost } from "./client-config.js";

// The CLI's settings live in client-config.ts (no zod: they load on every CLI start).
export { clientAdminKeyPath, clientCaCertPath, clientServerUrl, clientToken, isLoopbackHost } from "./client-config.js";
import { webhookUrlProblem } from "./core/webhook-address.js";

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const DURATION_UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A duration written `<n><unit>` (s, m, h or d: `30m`, `12h`, `7d`), or `0` (what it means: zeroMeans); in ms. */
const duration = (maxMs: number, zeroMeans = "0 keeps everything") =>
  z
    .string()
    .trim()
    .transform((v, ctx) => {
      if (v === "0") return 0;
      const match = /^(\d+)(s|m|h|d)$/.exec(v);
      const ms = match ? Number(match[1]) * DURATION_UNIT_MS[match[2] as keyof typeof DURATION_UNIT_MS] : NaN;
      if (Number.isSafeInteger(ms) && ms <= maxMs) return ms;
      ctx.addIssue({ code: "custom", message: `"${v}" is not a duration: use a number and a unit (s, m, h or d), e.g. 7d, 12h or 30m, up to ${maxMs / DURATION_UNIT_MS.d}d; ${zeroMeans}` });
      return z.NEVER;
    });

const ServerEnv = z.object({
  /** Port for everything (gRPC, gRPC-Web, Connect, HTTP; but see HODEI_WORKER_PORT). Default 7070; 0 picks a free port. */
  HODEI_PORT: int(0, 65535).default(7070),
  /** Address to listen on. Default 127.0.0.1; use 0.0.0.0 to serve other machines. */
  HODEI_HOST: z.string().min(1).default("127.0.0.1"),
  /**
   * A second port that serves only the worker API (hodei.v1.WorkerService), so that a cluster can
   * keep worker pods away from the client API with a NetworkPolicy (policies select ports, not
   * paths). When set, HODEI_PORT refuses WorkerService, this port refuses everything else (the
   * client API, /healthz, /metrics), and workers are given URLs with this port. Same address, limits,
   * timeouts and TLS as HODEI_PORT; HODEI_MAX_CONNECTIONS applies to each port on its own, so that
   * a flood of clients cannot lock workers out. 0 picks a free port.
   * Default: unset, and HODEI_PORT serves everything.
   */
  HODEI_WORKER_PORT: int(0, 65535).optional(),
  /**
   * TLS: PEM files of the server's certificate (leaf first, then any intermediates) and its private
   * key; both or neither. When set, every port serves HTTPS and gRPC over TLS only (ALPN h2 and
   * http/1.1), plain-text connections are refused, and the server's URLs (logged, and given to
   * workers) start with https://. The certificate must name the addresses clients and workers use
   * (by default workers use 127.0.0.1). Default: unset, plain HTTP.
   */
  HODEI_TLS_CERT: z.string().min(1).optional(),
  HODEI_TLS_KEY: z.string().min(1).optional(),
  /**
   * PEM file of the CA that issued HODEI_TLS_CERT. It is public, not a secret: every worker on every
   * provider gets it in its environment (HODEI_TLS_CA_PEM) to verify the server, hence its limit of
   * 64 KiB (one CA or a short chain, not a whole system bundle). The CLI reads the same variable.
   * Default: unset, and workers verify the server with the system's roots (a certificate from a
   * public CA).
   */
  HODEI_TLS_CA: z.string().min(1).optional(),
  /**
   * Directory for the embedded database, worker files and admin.key (the first admin API key,
   * mode 0600). Default ./.hodei. The CLI reads the same variable to find admin.key.
   */
  HODEI_DATA_DIR: z.string().min(1).default(".hodei"),
  /**
   * API keys on the client API (JobService, KeyService). Default required: every call needs
   * `Authorization: Bearer <key>`; the first start writes an admin key to <data dir>/admin.key.
   * off: anyone who reaches the port may do anything; refused on an address other than loopback
   * unless HODEI_AUTH_INSECURE=1. Agents authenticate with their OTP token either way.
   */
  HODEI_AUTH: z.enum(["required", "off"]).default("required"),
  /** 1 lets HODEI_AUTH=off serve a non-loopback HODEI_HOST (everyone on the network is admin). Default 0. */
  HODEI_AUTH_INSECURE: z.enum(["0", "1"]).default("0"),
  /**
   * A file holding the bootstrap admin API key (a Kubernetes Secret mounted in the pod, say): the
   * server stores that key as an admin key at start-up and writes no <data dir>/admin.key. The key
   * has the shape of the keys Hodei makes: hodei_key_ and 43 base64url characters. Default: unset,
   * and the first start writes <data dir>/admin.key.
   */
  HODEI_ADMIN_KEY_FILE: z.string().min(1).optional(),
  /**
   * The key that encrypts job secrets at rest (AES-256-GCM): the base64 of 32 random bytes, e.g.
   * `openssl rand -base64 32`. Give the same key to every server of one database, and keep it: jobs
   * whose secrets were sealed with another key fail at dispatch, saying so. Default: unset, and the
   * key is <data dir>/secret.key, created (mode 0600) on first start and never overwritten.
   */
  HODEI_SECRET_KEY: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      try {
        return parseSecretKey(v);
      } catch (err) {
        // The message says what is wrong with the value, never the value.
        ctx.addIssue({ code: "custom", message: (err as Error).message });
        return z.NEVER;
      }
    }),
  /**
   * sqlite:PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB (also postgresql://) for PostgreSQL,
   * where TLS is set in the URL as libpq reads it (?sslmode=require|verify-full, sslrootcert=PATH,
   * sslcert=PATH, sslkey=PATH). Default sqlite:<data dir>/hodei.db
   */
  HODEI_DATABASE_URL: z
    .string()
    .refine((v) => /^(sqlite:|postgres(ql)?:\/\/)/.test(v), "must start with sqlite: or postgres://")
    .optional(),
  // PostgreSQL only (ignored with SQLite):
  /** Connections in the pool, per server. Default 10. */
  HODEI_DB_POOL_SIZE: int(1, 1000).default(10),
  /** How long opening a connection may take before it fails, ms. Default 5000. */
  HODEI_DB_CONNECT_TIMEOUT_MS: int(100, 600_000).default(5000),
  /**
   * How long one statement may run (PostgreSQL's statement_timeout; the client also gives up on an
   * answer that does not come a second after it), and how long a transaction may sit idle
   * (idle_in_transaction_session_timeout), ms. Default 30000.
   */
  HODEI_DB_STATEMENT_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  /** Enabled providers, comma-separated. Default: local, plus docker when a Docker daemon answers. */
  HODEI_PROVIDERS: z
    .string()
    .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.enum(["local", "docker", "kubernetes"], { message: "known providers: local, docker, kubernetes" })).min(1))
    .optional(),
  /** Provider used when a job names none. Default: the first enabled one. */
  HODEI_DEFAULT_PROVIDER: z.string().optional(),
  /**
   * Scopes the labels of everything this installation creates. Default: the id stored in the
   * database on first start (store/cluster-id.ts). When set and different from the stored id, this
   * value wins, replaces the stored one and the change is logged as a warning.
   */
  HODEI_CLUSTER_ID: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "1 to 63 lowercase letters, digits and -, starting and ending with a letter or digit (it is a Kubernetes label value)")
    .optional(),
  /**
   * How long a finished job (with its workers, tokens and log) is kept after it finished, as
   * `<n><unit>` with unit s, m, h or d. Default 7d; 0 keeps everything.
   */
  HODEI_RETENTION: duration(3650 * DURATION_UNIT_MS.d).default(7 * DURATION_UNIT_MS.d),
  /**
   * How long a job may wait to start once due (queued, or provisioning before its worker runs it)
   * when it names no queue timeout of its own, as `<n><unit>` with unit s, m, h or d, up to 30d; it
   * then ends timed_out, saying why it never started. Default: unset (as is 0), jobs wait for ever.
   */
  HODEI_QUEUE_TIMEOUT: duration(30 * DURATION_UNIT_MS.d, "0 (or unset) lets jobs wait for ever").optional(),
  /**
   * How late a schedule's tick may be seen and still fire (a pass that came late, a restart): a tick
   * older than this was missed, and the schedule's missed policy applies. A duration (`30s`, `5m`).
   * Default 30s.
   */
  HODEI_SCHEDULE_GRACE: duration(DURATION_UNIT_MS.d, "0 is not allowed: every tick is seen a little late").refine((ms) => ms > 0, "0 is not allowed: every tick is seen a little late; use e.g. 30s").default(30_000),
  // Webhooks of jobs' ends (scheduler/webhooks.ts; README "Webhooks").
  /**
   * A URL told of every job's end, besides the job's own (hodei run --notify). Checked like those:
   * http or https, and a public address unless HODEI_WEBHOOK_ALLOW_PRIVATE=1. Default: unset.
   */
  HODEI_WEBHOOK_URL: z.string().trim().min(1).optional(),
  /**
   * Key of the Hodei-Signature header (HMAC-SHA256 of "<t>.<body>"), at least 16 characters; share
   * it with the receivers. Default: unset, and webhooks are sent unsigned (the server warns at start).
   */
  HODEI_WEBHOOK_SECRET: z.string().min(16, "at least 16 characters").max(1024).optional(),
  /**
   * 1: webhooks may go to private, loopback, link-local and metadata addresses (a receiver on the
   * same network). Default 0: such URLs are refused at submit and at delivery (server-side request forgery).
   */
  HODEI_WEBHOOK_ALLOW_PRIVATE: z.enum(["0", "1"]).default("0"),
  /** Time limit of one webhook request, ms. Default 10000. */
  HODEI_WEBHOOK_TIMEOUT_MS: int(100, 60_000).default(10_000),
  /** Backoff of a failed webhook request: the ceiling after the first failure, doubling, ms. Default 10000. */
  HODEI_WEBHOOK_RETRY_BASE_MS: int(10, 3_600_000).default(10_000),
  /** The backoff's ceiling never grows past this, ms. Default 3600000 (an hour). */
  HODEI_WEBHOOK_RETRY_MAX_MS: int(10, 86_400_000).default(3_600_000),
  /** A delivery not answered 2xx this long after the job ended is given up (failed), as `<n><unit>`, up to 7d. Default 1d. */
  HODEI_WEBHOOK_RETRY_FOR: duration(7 * DURATION_UNIT_MS.d, "0 tries once").default(DURATION_UNIT_MS.d),
  /** Job timeout when a job names none, seconds. Default 3600. */
  HODEI_JOB_TIMEOUT_SECONDS: int(1, 7 * 24 * 3600).default(3600),
  /** A worker must register within this many ms of being provisioned. Default 60000. */
  HODEI_REGISTRATION_TIMEOUT_MS: int(100, 3_600_000).default(60_000),
  /** How often agents heartbeat, ms. Default 5000. */
  HODEI_HEARTBEAT_INTERVAL_MS: int(50, 600_000).default(5000),
  /** A worker silent for this long is lost, ms. Default 30000. */
  HODEI_HEARTBEAT_TIMEOUT_MS: int(200, 3_600_000).default(30_000),
  /** Agents retry a lost stream for this long before giving up on their attempt, ms. Default 120000. */
  HODEI_RECONNECT_WINDOW_MS: int(1000, 3_600_000).default(120_000),
  /** Period of the reconcile pass, ms. Default 2000. */
  HODEI_RECONCILE_INTERVAL_MS: int(20, 600_000).default(2000),
  /**
   * Several replicas on one database: the machine this replica runs on. Local workers (processes)
   * belong to their node: only replicas with the same HODEI_NODE_ID inspect, stop or reap them, and
   * the local provider's capacity counts per node. Default: the hostname.
   */
  HODEI_NODE_ID: z.string().trim().min(1).max(255).optional(),
  /**
   * Several replicas on one database: length of the leader lease, ms. The leader (one replica at a
   * time) runs queue deadlines, schedules, deadlines, the destroys and reaping of workers not bound
   * to a node, retention and webhook deliveries; it renews every third of this, and
   * another replica takes over within a third of it after it expires. Default 15000.
   */
  HODEI_LEADER_LEASE_MS: int(300, 600_000).default(15_000),
  /** A labelled resource with no live worker is reaped only once older than this, ms. Default 30000. */
  HODEI_ORPHAN_GRACE_MS: int(0, 3_600_000).default(30_000),
  /** Between SIGTERM and SIGKILL when a worker is stopped, ms. Default 5000. */
  HODEI_STOP_GRACE_MS: int(0, 600_000).default(5000),
  /** Output a job may log before it is cut with a visible marker, bytes. Default 16 MiB. */
  HODEI_LOG_LIMIT_BYTES: int(1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  /** Workers the local provider runs at once. Default 16. */
  HODEI_LOCAL_MAX_WORKERS: int(1, 10_000).default(16),
  /** Idle local agents kept booted for the next jobs (0 turns the warm pool off). Default 2. */
  HODEI_LOCAL_WARM_WORKERS: int(0, 64).default(2),
  /** Address local workers use to reach the control plane. Default http(s)://127.0.0.1:<worker port, else port>. */
  HODEI_LOCAL_WORKER_SERVER_URL: z.url().optional(),
  /** Socket of the Docker daemon. Default /var/run/docker.sock. */
  HODEI_DOCKER_SOCKET: z.string().min(1).default("/var/run/docker.sock"),
  /** Image of Docker jobs that name none. Default hodei-worker:<package version> (npx hodei image build). */
  HODEI_DOCKER_IMAGE: z.string().min(1).default(DEFAULT_WORKER_IMAGE),
  /** Network mode of worker containers. Default host. */
  HODEI_DOCKER_NETWORK_MODE: z.string().min(1).default("host"),
  /** Address Docker workers use to reach the control plane. Default http(s)://127.0.0.1:<worker port, else port> (host network). */
  HODEI_DOCKER_WORKER_SERVER_URL: z.url().optional(),
  /** Host directory of the agent runtime mounted into jobs' own images. Default <data dir>/agent-runtime. */
  HODEI_DOCKER_RUNTIME_DIR: z.string().min(1).optional(),
  /** Containers the Docker provider runs at once. Default 8. */
  HODEI_DOCKER_MAX_WORKERS: int(1, 10_000).default(8),
  /** Idle containers of the default image kept started and connected for the next jobs, counted against HODEI_DOCKER_MAX_WORKERS (0 turns the warm pool off). Default 0. */
  HODEI_DOCKER_WARM_WORKERS: int(0, 64).default(0),
  /** Kubeconfig of the Kubernetes provider. Default: KUBECONFIG, else the in-cluster service account. */
  HODEI_K8S_KUBECONFIG: z.string().min(1).optional(),
  KUBECONFIG: z.string().min(1).optional(),
  /** Namespace of worker pods. Default: the kubeconfig context's namespace, else default. */
  HODEI_K8S_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a DNS label").optional(),
  /**
   * Image of worker pods; it must hold the agent at /opt/hodei. Default hodei-worker:<package
   * version>, the tag `hodei image build` gives it: load it onto the nodes or push it (README).
   */
  HODEI_K8S_IMAGE: z.string().min(1).default(DEFAULT_WORKER_IMAGE),
  /**
   * imagePullPolicy of worker pods that run HODEI_K8S_IMAGE (a job's own image follows the job's
   * pull policy): if-not-present (default; a node that has the image uses it, so an image loaded
   * into kind, k3d or minikube works), always, or never.
   */
  HODEI_K8S_IMAGE_PULL_POLICY: z.enum(PULL_POLICIES, { message: `one of ${PULL_POLICIES.join(", ")}` }).default(DEFAULT_PULL_POLICY),
  /** Service account of worker pods. Default none (and no token mounted). */
  HODEI_K8S_SERVICE_ACCOUNT: z.string().min(1).optional(),
  /** Image pull secrets, comma-separated. */
  HODEI_K8S_IMAGE_PULL_SECRETS: z.string().default("").transform((v) => v.split(",").map((x) => x.trim()).filter(Boolean)),
  /** Node selector of every worker pod, k=v,k2=v2 (a job may add keys, never change these). Default none. */
  HODEI_K8S_NODE_SELECTOR: z
    .string()
    .default("")
    .transform((v, ctx) => {
      const out: Record<string, string> = {};
      for (const pair of v.split(",").map((x) => x.trim()).filter(Boolean)) {
        const eq = pair.indexOf("=");
        if (eq <= 0) ctx.addIssue({ code: "custom", message: `"${pair}" is not key=value` });
        else out[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      for (const problem of nodeSelectorProblems(out)) ctx.addIssue({ code: "custom", message: problem });
      return out;
    }),
  /**
   * Tolerations of every worker pod, as JSON: an array of Kubernetes toleration objects (key,
   * operator, value, effect, tolerationSeconds), checked as the API server checks them; a job's own
   * are added. Default none.
   */
  HODEI_K8S_TOLERATIONS: z
    .string()
    .default("[]")
    .transform((v, ctx) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(v);
      } catch {
        // reported below
      }
      if (!Array.isArray(parsed)) {
        ctx.addIssue({ code: "custom", message: "a JSON array of tolerations" });
        return [];
      }
      const tolerations = normaliseTolerations(parsed as Record<string, unknown>[]);
      if (typeof tolerations === "string") {
        ctx.addIssue({ code: "custom", message: `a JSON array of tolerations: ${tolerations}` });
        return [];
      }
      return tolerations;
    }),
  /**
   * A worker pod the scheduler cannot place (Unschedulable) waits this long, counted while the
   * control plane runs, with the scheduler's message as its job's reason, before its attempt fails
   * with that message; it starts as soon as the cluster makes room. `<n><unit>` (s, m, h or d), or 0
   * to wait as long as the job itself allows (its queue timeout, a cancel). Default 10m.
   */
  HODEI_K8S_PENDING_TIMEOUT: duration(30 * DURATION_UNIT_MS.d, "0 waits as long as the job allows").default(10 * DURATION_UNIT_MS.m),
  /** Address pods use to reach the control plane (e.g. the Service's DNS name). Default: the server's own URL, with the worker port if set. */
  HODEI_K8S_WORKER_SERVER_URL: z.url().optional(),
  /** Pods the Kubernetes provider runs at once. Default 16. */
  HODEI_K8S_MAX_WORKERS: int(1, 10_000).default(16),
  /** The bundled agent. Default dist/agent.cjs of this package. */
  HODEI_AGENT_PATH: z.string().optional(),
  /**
   * Largest request message, bytes, both as received and after decompression (a gzip or brotli body
   * that inflates past it is refused without inflating the rest). Default 4 MiB: SubmitJob's own
   * spec limits add up to about 1.5 MiB and agents' log batches stay under about 1.1 MiB, hence
   * the minimum of 2 MiB (below it, valid jobs and log batches would be refused).
   */
  HODEI_MAX_MESSAGE_BYTES: int(2 * 1024 * 1024, 1024 * 1024 * 1024).default(4 * 1024 * 1024),
  /**
   * Largest response message, bytes; a larger one fails the call with resource_exhausted (ask for a
   * smaller page). Default 64 MiB. At least 16 MiB: one job at SubmitJob's largest spec is about
   * 1.2 MiB in binary and up to about 8 MiB in JSON (control characters escape to 6 bytes), and a
   * SubmitJob or GetJob answer must never fail on its own job. connect-es checks it once the
   * message is serialized: it bounds what is sent, not what a handler builds.
   */
  HODEI_MAX_RESPONSE_MESSAGE_BYTES: int(16 * 1024 * 1024, 1024 * 1024 * 1024).default(64 * 1024 * 1024),
  /**
   * A new connection must send enough bytes to tell HTTP/1.1 from the HTTP/2 preface within this
   * many ms, counted from accept (an absolute deadline, so trickling bytes does not extend it); with
   * TLS, it must finish its TLS handshake within it. Default 10000: clients send their first bytes
   * at once, and a handshake takes one or two round trips.
   */
  HODEI_SNIFF_TIMEOUT_MS: int(50, 600_000).default(10_000),
  /** HTTP/1.1: a request's headers must arrive within this many ms. Default 10000. */
  HODEI_HEADERS_TIMEOUT_MS: int(50, 600_000).default(10_000),
  /**
   * A whole request (headers and body) must arrive within this many ms: on HTTP/1.1 Node's
   * requestTimeout, on HTTP/2 each stream's request body, except long-lived bidi streams (the
   * worker stream). A response that streams after the request ended (logs -f) is never cut.
   * Default 15000: with the sniff deadline, half a request is closed within 30 s.
   */
  HODEI_REQUEST_TIMEOUT_MS: int(50, 3_600_000).default(15_000),
  /** HTTP/1.1: an idle keep-alive connection is closed after this many ms. Default 15000. */
  HODEI_KEEP_ALIVE_TIMEOUT_MS: int(50, 600_000).default(15_000),
  /**
   * HTTP/2: a connection with no open stream is closed (GOAWAY) after this many ms. Streams are
   * counted, not frames, so a quiet log follower keeps its connection. Default 15000.
   */
  HODEI_HTTP2_IDLE_TIMEOUT_MS: int(50, 3_600_000).default(15_000),
  /** HTTP/2: streams one connection may have open at once. Default 100 (what gRPC servers commonly allow). */
  HODEI_HTTP2_MAX_CONCURRENT_STREAMS: int(1, 10_000).default(100),
  /**
   * Connections open at once, per port (HODEI_PORT and HODEI_WORKER_PORT each); further ones are
   * closed on accept. Default 4096: keep it (twice it with a worker port) below the process's
   * open-file limit (ulimit -n) minus what the database and providers need.
   */
  HODEI_MAX_CONNECTIONS: int(1, 1_000_000).default(4096),
  /**
   * Register calls refused for their OTP token (unknown, used, expired) that one client address may
   * have per window and get answered at once; further ones wait (below). Legitimate agents rarely
   * fail at all, and a valid token is never delayed, whatever its address did. Default 10.
   */
  HODEI_REGISTER_FREE_FAILURES: int(0, 1_000_000).default(10),
  /** Delay of an address's first refusal past HODEI_REGISTER_FREE_FAILURES, ms; it doubles with each further one. Default 250. */
  HODEI_REGISTER_FAILURE_DELAY_MS: int(1, 600_000).default(250),
  /** The longest delay before a refused Register is answered, ms. Default 10000. */
  HODEI_REGISTER_MAX_FAILURE_DELAY_MS: int(1, 600_000).default(10_000),
  /** Refused Registers are counted per address over windows this long, and logged once per address per window, ms. Default 60000. */
  HODEI_REGISTER_FAILURE_WINDOW_MS: int(1000, 86_400_000).default(60_000),
  /**
   * Delayed refusals of one address waiting at once; beyond that a refusal is answered at once with
   * resource_exhausted, so that no address makes the server hold an unbounded number of calls. Default 8.
   */
  HODEI_REGISTER_MAX_PENDING_REFUSALS: int(1, 10_000).default(8),
  /** Client addresses whose refused Registers are tracked at once (about 200 bytes each). Default 10000. */
  HODEI_REGISTER_MAX_ADDRESSES: int(1, 1_000_000).default(10_000),
  /** trace | debug | info | warn | error | silent. Default info. */
  HODEI_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "silent"]).default("info"),
});

export type ServerConfig = ReturnType<typeof parseServerConfig>;

/** The package's root (where package.json is), found from this file whether bundled or not. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("hodei: package.json not found above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

/** Variables local workers start from: enough for a normal shell, none of the server's settings. */
const WORKER_BASE_ENV = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM"];

export function parseServerConfig(env: NodeJS.ProcessEnv = process.env) {
  const parsed = ServerEnv.safeParse(env);
  if (!parsed.success) {
    throw new Error(`invalid configuration:\n${z.prettifyError(parsed.error)}`);
  }
  const e = parsed.data;
  if (e.HODEI_REGISTER_FAILURE_DELAY_MS > e.HODEI_REGISTER_MAX_FAILURE_DELAY_MS) {
    throw new Error("invalid configuration: HODEI_REGISTER_FAILURE_DELAY_MS must not exceed HODEI_REGISTER_MAX_FAILURE_DELAY_MS");
  }
  if (e.HODEI_HEADERS_TIMEOUT_MS > e.HODEI_REQUEST_TIMEOUT_MS) {
    throw new Error("invalid configuration: HODEI_HEADERS_TIMEOUT_MS must not exceed HODEI_REQUEST_TIMEOUT_MS (the headers are part of the request)");
  }
  if ((e.HODEI_TLS_CERT === undefined) !== (e.HODEI_TLS_KEY === undefined)) {
    throw new Error("invalid configuration: set both HODEI_TLS_CERT and HODEI_TLS_KEY (PEM files of the certificate and its key), or neither");
  }
  if (e.HODEI_WORKER_PORT !== undefined && e.HODEI_WORKER_PORT !== 0 && e.HODEI_WORKER_PORT === e.HODEI_PORT) {
    throw new Error("invalid configuration: HODEI_WORKER_PORT must differ from HODEI_PORT (leave it unset to serve workers on HODEI_PORT)");
  }
  const dataDir = resolve(e.HODEI_DATA_DIR);
  const databaseUrl = e.HODEI_DATABASE_URL ?? `sqlite:${join(dataDir, "hodei.db")}`;
  if (e.HODEI_AUTH === "off" && !isLoopbackHost(e.HODEI_HOST) && e.HODEI_AUTH_INSECURE !== "1") {
    throw new Error(
      `invalid configuration: HODEI_AUTH=off with HODEI_HOST=${e.HODEI_HOST} would let anyone who reaches this address run anything: keep auth on (the default), listen on 127.0.0.1, or set HODEI_AUTH_INSECURE=1 if that is really what you want`,
    );
  }
  const runtimeDir = resolve(e.HODEI_DOCKER_RUNTIME_DIR ?? join(dataDir, "agent-runtime"));
  if (isWithin(join(dataDir, "admin.key"), runtimeDir)) {
    // The runtime directory is mounted into containers and copied into the worker image.
    // secret.key sits beside admin.key: one test covers both.
    throw new Error(`invalid configuration: HODEI_DOCKER_RUNTIME_DIR=${runtimeDir} would hold ${join(dataDir, "admin.key")} and ${join(dataDir, "secret.key")} and show them to every container: use a directory of its own`);
  }

  const isWebhookPrivateAllowed = e.HODEI_WEBHOOK_ALLOW_PRIVATE === "1";
  const webhookUrlIssue = e.HODEI_WEBHOOK_URL === undefined ? null : webhookUrlProblem(e.HODEI_WEBHOOK_URL, isWebhookPrivateAllowed);
  if (webhookUrlIssue) throw new Error(`invalid configuration: HODEI_WEBHOOK_URL: ${webhookUrlIssue}`);

  const baseEnv: Record<string, string> = {};
  for (const key of WORKER_BASE_ENV) if (env[key] !== undefined) baseEnv[key] = env[key]!;
  return {
    port: e.HODEI_PORT,
    host: e.HODEI_HOST,
    /** Undefined when not set: HODEI_PORT serves workers too. */
    workerPort: e.HODEI_WORKER_PORT,
    /** Paths of the PEM files; undefined when TLS is off. caPath may be unset with TLS on. */
    tls: e.HODEI_TLS_CERT && e.HODEI_TLS_KEY ? { certPath: resolve(e.HODEI_TLS_CERT), keyPath: resolve(e.HODEI_TLS_KEY), caPath: e.HODEI_TLS_CA && resolve(e.HODEI_TLS_CA) } : undefined,
    /** HODEI_TLS_CA when TLS is off: not used, and said so at start-up. */
    unusedTlsCaPath: e.HODEI_TLS_CERT ? undefined : e.HODEI_TLS_CA,
    dataDir,
    /** False with HODEI_AUTH=off. */
    isAuthRequired: e.HODEI_AUTH === "required",
    adminKeyFile: e.HODEI_ADMIN_KEY_FILE,
    /** HODEI_SECRET_KEY, decoded; undefined: the key of <data dir>/secret.key (server/secret-key.ts). */
    secretKey: e.HODEI_SECRET_KEY,
    databaseUrl,
    /** PostgreSQL's pool and timeouts (store/postgres.ts); not used with SQLite. */
    databasePool: { size: e.HODEI_DB_POOL_SIZE, connectTimeoutMs: e.HODEI_DB_CONNECT_TIMEOUT_MS, statementTimeoutMs: e.HODEI_DB_STATEMENT_TIMEOUT_MS },
    /** Undefined when not set: the server enables local, and docker if a daemon answers. */
    providers: e.HODEI_PROVIDERS as string[] | undefined,
    /** Undefined when not set: the first enabled provider. */
    defaultProvider: e.HODEI_DEFAULT_PROVIDER,
    /** HODEI_CLUSTER_ID when set; the id itself is decided once the database is open (store/cluster-id.ts). */
    clusterIdOverride: e.HODEI_CLUSTER_ID,
    /** 0 keeps every finished job. */
    retentionMs: e.HODEI_RETENTION,
    /** Webhooks of jobs' ends (scheduler/webhooks.ts). */
    webhooks: {
      urls: e.HODEI_WEBHOOK_URL ? [e.HODEI_WEBHOOK_URL] : [],
      /** "": unsigned. */
      secret: e.HODEI_WEBHOOK_SECRET ?? "",
      isPrivateAllowed: isWebhookPrivateAllowed,
      timeoutMs: e.HODEI_WEBHOOK_TIMEOUT_MS,
      retry: { baseMs: e.HODEI_WEBHOOK_RETRY_BASE_MS, capMs: e.HODEI_WEBHOOK_RETRY_MAX_MS, giveUpAfterMs: e.HODEI_WEBHOOK_RETRY_FOR },
    },
    jobTimeoutSeconds: e.HODEI_JOB_TIMEOUT_SECONDS,
    /** 0: jobs that name no queue timeout wait for ever. Whole seconds (the duration's units are). */
    queueTimeoutSeconds: (e.HODEI_QUEUE_TIMEOUT ?? 0) / 1000,
    registrationTimeoutMs: e.HODEI_REGISTRATION_TIMEOUT_MS,
    heartbeatIntervalMs: e.HODEI_HEARTBEAT_INTERVAL_MS,
    heartbeatTimeoutMs: e.HODEI_HEARTBEAT_TIMEOUT_MS,
    reconnectWindowMs: e.HODEI_RECONNECT_WINDOW_MS,
    reconcileIntervalMs: e.HODEI_RECONCILE_INTERVAL_MS,
    /** HODEI_NODE_ID, else the hostname. */
    nodeId: e.HODEI_NODE_ID ?? hostname(),
    leaderLeaseMs: e.HODEI_LEADER_LEASE_MS,
    scheduleGraceMs: e.HODEI_SCHEDULE_GRACE,
    orphanGraceMs: e.HODEI_ORPHAN_GRACE_MS,
    stopGraceMs: e.HODEI_STOP_GRACE_MS,
    logLimitBytes: e.HODEI_LOG_LIMIT_BYTES,
    logLevel: e.HODEI_LOG_LEVEL,
    /** OpenTelemetry traces (OTEL_* variables, tracing-config.ts); undefined: off. */
    tracing: parseTracingConfig(env),
    /** Refused Register calls, per client address (server/register-limiter.ts). */
    registerLimits: {
      freeFailures: e.HODEI_REGISTER_FREE_FAILURES,
      baseDelayMs: e.HODEI_REGISTER_FAILURE_DELAY_MS,
      maxDelayMs: e.HODEI_REGISTER_MAX_FAILURE_DELAY_MS,
      windowMs: e.HODEI_REGISTER_FAILURE_WINDOW_MS,
      maxPendingPerAddress: e.HODEI_REGISTER_MAX_PENDING_REFUSALS,
      maxAddresses: e.HODEI_REGISTER_MAX_ADDRESSES,
    },
    /** Limits of the network edge: message sizes, connection timeouts, HTTP/2 settings. */
    edge: {
      maxMessageBytes: e.HODEI_MAX_MESSAGE_BYTES,
      maxResponseMessageBytes: e.HODEI_MAX_RESPONSE_MESSAGE_BYTES,
      sniffTimeoutMs: e.HODEI_SNIFF_TIMEOUT_MS,
      headersTimeoutMs: e.HODEI_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HODEI_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HODEI_KEEP_ALIVE_TIMEOUT_MS,
      http2IdleTimeoutMs: e.HODEI_HTTP2_IDLE_TIMEOUT_MS,
      http2MaxConcurrentStreams: e.HODEI_HTTP2_MAX_CONCURRENT_STREAMS,
      maxConnections: e.HODEI_MAX_CONNECTIONS,
    },
    docker: {
      socketPath: e.HODEI_DOCKER_SOCKET,
      image: e.HODEI_DOCKER_IMAGE,
      networkMode: e.HODEI_DOCKER_NETWORK_MODE,
      workerServerUrl: e.HODEI_DOCKER_WORKER_SERVER_URL,
      maxWorkers: e.HODEI_DOCKER_MAX_WORKERS,
      warmWorkers: e.HODEI_DOCKER_WARM_WORKERS,
      runtimeDir,
    },
    kubernetes: {
      kubeconfig: e.HODEI_K8S_KUBECONFIG ?? e.KUBECONFIG,
      namespace: e.HODEI_K8S_NAMESPACE,
      image: e.HODEI_K8S_IMAGE,
      imagePullPolicy: e.HODEI_K8S_IMAGE_PULL_POLICY,
      serviceAccount: e.HODEI_K8S_SERVICE_ACCOUNT,
      imagePullSecrets: e.HODEI_K8S_IMAGE_PULL_SECRETS,
      nodeSelector: e.HODEI_K8S_NODE_SELECTOR,
      tolerations: e.HODEI_K8S_TOLERATIONS,
      workerServerUrl: e.HODEI_K8S_WORKER_SERVER_URL,
      maxWorkers: e.HODEI_K8S_MAX_WORKERS,
      /** 0: no provider-wide limit on waiting to be scheduled. */
      pendingTimeoutMs: e.HODEI_K8S_PENDING_TIMEOUT,
    },
    local: {
      maxWorkers: e.HODEI_LOCAL_MAX_WORKERS,
      warmWorkers: e.HODEI_LOCAL_WARM_WORKERS,
      workerServerUrl: e.HODEI_LOCAL_WORKER_SERVER_URL,
      agentPath: e.HODEI_AGENT_PATH ?? join(packageRoot(), "dist", "agent.cjs"),
      nodePath: process.execPath,
      baseEnv,
    },
  };
}

/**
 * A secret key from its text form (HODEI_SECRET_KEY, <data dir>/secret.key): base64, standard or
 * URL-safe, padded or not, of exactly 32 bytes. The message says what is wrong, never the text.
 */
export function parseSecretKey(text: string): Buffer {
  const trimmed = text.trim();
  const hint = "expected the base64 of 32 random bytes, e.g. the output of: openssl rand -base64 32";
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new Error(`not base64: ${hint}`);
  const key = Buffer.from(trimmed.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (key.length !== 32) throw new Error(`decodes to ${key.length} bytes, not 32: ${hint}`);
  return key;
}

/** Whether `path` is `dir` or inside it. */
function isWithin(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}
