/**
 * What a user may submit, and the limits that keep one job from hurting the control plane.
 * validateJobSpec either returns a normalised spec or throws InvalidInputError naming the field;
 * nothing is stored before it passes.
 */
import { InvalidInputError } from "./errors.js";
import { WEBHOOK_LIMITS, webhookUrlProblem } from "./webhook-address.js";
import { DEFAULT_PULL_POLICY, isPullPolicy, nodeSelectorProblems, normaliseTolerations, PULL_POLICIES, type PullPolicy, type Toleration } from "./placement.js";

export interface JobSpec {
  command: string[];
  script: string;
  provider: string;
  env: Record<string, string>;
  timeoutSeconds: number;
  labels: Record<string, string>;
  maxAttempts: number;
  image: string;
  idempotencyKey: string;
  /** CPU limit in thousandths of a core; 0 means none. */
  cpuMillis: number;
  /** Memory limit in MiB; 0 means none. */
  memoryMb: number;
  /** Exit codes that make an attempt retryable, normalised: "" (none), "any", or ascending codes "3,4". */
  retryOnExitCodes: string;
  /**
   * Secrets: environment variables whose values are never shown again (names only), stored
   * encrypted until the job ends and redacted from its log. Danger zone: the values are plain text
   * here; nothing may log or store a JobSpec as a whole.
   */
  secrets: Record<string, string>;
  // Queue: when and in which order the job starts, and how long it may wait.
  /** Higher runs first, -100..100; default 0. */
  priority: number;
  /** Seconds the job may wait to start once due before it ends timed_out; 0 means for ever. */
  queueTimeoutSeconds: number;
  /** Epoch ms before which the job does not start, as given (0: none); see dueAtMs. */
  runAtMs: number;
  /** Seconds after the submission before which the job does not start, as given (0: none). */
  delaySeconds: number;
  // Resources: provider details per job (core/placement.ts).
  /** When the image is pulled (docker, kubernetes). Default if-not-present. */
  pullPolicy: PullPolicy;
  /** Kubernetes: node labels the pod must be scheduled on, added to the provider's. */
  nodeSelector: Record<string, string>;
  /** Kubernetes: taints the pod tolerates, added to the provider's. */
  tolerations: Toleration[];
  /**
   * The job's trace (core/trace-context.ts), decided by the server at submit from the caller's
   * traceparent; not the caller's to set through the spec, and not part of its hash (spec-hash.ts).
   * Unset: none.
   */
  trace?: { traceId: string; traceParent: string };
  /** Webhooks: URLs told of the job's end (core/webhook-address.ts); at most 4, without duplicates. */
  notify: string[];
}

export const SPEC_LIMITS = {
  commandArgs: 4096,
  commandBytes: 256 * 1024,
  /** One argument, or one NAME=VALUE of the environment: Linux refuses a longer one (MAX_ARG_STRLEN, with its NUL). */
  argBytes: 128 * 1024 - 1,
  scriptBytes: 1024 * 1024,
  envVars: 256,
  envBytes: 128 * 1024,
  labels: 64,
  labelBytes: 256,
  maxTimeoutSeconds: 7 * 24 * 3600,
  maxAttempts: 10,
  idempotencyKeyBytes: 256,
  maxCpuMillis: 256_000,
  minMemoryMb: 16,
  maxMemoryMb: 1024 * 1024,
  imageBytes: 512,
  retryExitCodes: 32,
  secrets: 32,
  /** One value at most: its URL-encoded form (up to 3 times longer) stays well within a log chunk. */
  secretValueBytes: 8 * 1024,
  secretsBytes: 64 * 1024,
  minPriority: -100,
  maxPriority: 100,
  maxQueueTimeoutSeconds: 30 * 24 * 3600,
  maxRunAheadSeconds: 365 * 24 * 3600,
} as const;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.\-/]*$/;

export interface SpecDefaults {
  provider: string;
  timeoutSeconds: number;
  /** Names of the enabled providers; anything else is refused. */
  providers: readonly string[];
  /** Queue timeout of a job that names none, seconds (HODEI_QUEUE_TIMEOUT). Default 0: wait for ever. */
  queueTimeoutSeconds?: number;
  /** The time of the submission, epoch ms: a run-at more than a year after it is refused. Unset: not checked. */
  nowMs?: number;
  /** Webhook URLs may name private, loopback and link-local addresses (HODEI_WEBHOOK_ALLOW_PRIVATE). Default false. */
  isWebhookPrivateAllowed?: boolean;
}

function bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

function fail(field: string, message: string): never {
  throw new InvalidInputError(`${field}: ${message}`, field);
}

export function validateJobSpec(input: Partial<JobSpec>, defaults: SpecDefaults): JobSpec {
  const command = input.command ?? [];
  const script = input.script ?? "";
  if (command.length === 0 && script.trim() === "") {
    fail("command", "must not be empty: give the command to run (e.g. [\"echo\",\"hi\"]) or a script");
  }
  if (command.length > 0 && script !== "") fail("script", "give either command or script, not both");
  if (command.length > SPEC_LIMITS.commandArgs) fail("command", `at most ${SPEC_LIMITS.commandArgs} arguments`);
  if (command.length > 0 && command[0].trim() === "") fail("command", "the first element (the program) must not be empty");
  const commandBytes = command.reduce((sum, arg) => sum + bytes(arg), 0);
  if (commandBytes > SPEC_LIMITS.commandBytes) fail("command", `at most ${SPEC_LIMITS.commandBytes} bytes in all`);
  const longArg = command.findIndex((arg) => bytes(arg) > SPEC_LIMITS.argBytes);
  if (longArg >= 0) {
    fail("command", `argument ${longArg} is ${bytes(command[longArg])} bytes; Linux starts no program with an argument over ${SPEC_LIMITS.argBytes} bytes: put long text in script instead`);
  }
  if (command.some((arg) => arg.includes("\0"))) fail("command", "arguments must not contain NUL bytes");
  if (bytes(script) > SPEC_LIMITS.scriptBytes) fail("script", `at most ${SPEC_LIMITS.scriptBytes} bytes`);

  const provider = input.provider || defaults.provider;
  if (!defaults.providers.includes(provider)) {
    fail("provider", `unknown provider "${provider}"; enabled providers: ${defaults.providers.join(", ")}`);
  }

  const env = input.env ?? {};
  const envEntries = Object.entries(env);
  if (envEntries.length > SPEC_LIMITS.envVars) fail("env", `at most ${SPEC_LIMITS.envVars} variables`);
  let envBytes = 0;
  for (const [name, value] of envEntries) {
    if (!ENV_NAME.test(name)) fail("env", `"${name}" is not a valid variable name (letters, digits, _; not starting with a digit)`);
    if (name.startsWith("HODEI_")) fail("env", `"${name}": the HODEI_ prefix is reserved`);
    if (value.includes("\0")) fail("env", `"${name}" must not contain NUL bytes`);
    envBytes += bytes(name) + bytes(value);
    if (bytes(name) + 1 + bytes(value) > SPEC_LIMITS.argBytes) fail("env", `"${name}" is too long: Linux starts no program with a NAME=VALUE over ${SPEC_LIMITS.argBytes} bytes`);
  }
  if (envBytes > SPEC_LIMITS.envBytes) fail("env", `too large: ${envBytes} bytes, at most ${SPEC_LIMITS.envBytes}`);

  const timeoutSeconds = input.timeoutSeconds || defaults.timeoutSeconds;
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 0) fail("timeoutSeconds", "must be a positive number of seconds");
  if (timeoutSeconds > SPEC_LIMITS.maxTimeoutSeconds) {
    fail("timeoutSeconds", `at most ${SPEC_LIMITS.maxTimeoutSeconds} (7 days), got ${timeoutSeconds}`);
  }

  const labels = input.labels ?? {};
  if (Object.keys(labels).length > SPEC_LIMITS.labels) fail("labels", `at most ${SPEC_LIMITS.labels} labels`);
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(name) || bytes(name) > SPEC_LIMITS.labelBytes) fail("labels", `"${name}" is not a valid label name`);
    if (bytes(value) > SPEC_LIMITS.labelBytes) fail("labels", `value of "${name}" is longer than ${SPEC_LIMITS.labelBytes} bytes`);
  }

  const maxAttempts = input.maxAttempts || 1;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > SPEC_LIMITS.maxAttempts) {
    fail("maxAttempts", `must be between 1 and ${SPEC_LIMITS.maxAttempts}`);
  }
  const idempotencyKey = input.idempotencyKey ?? "";
  if (bytes(idempotencyKey) > SPEC_LIMITS.idempotencyKeyBytes) fail("idempotencyKey", `at most ${SPEC_LIMITS.idempotencyKeyBytes} bytes`);

  const cpuMillis = input.cpuMillis ?? 0;
  if (!Number.isInteger(cpuMillis) || cpuMillis < 0 || cpuMillis > SPEC_LIMITS.maxCpuMillis) {
    fail("resources.cpuMillis", `between 0 (no limit) and ${SPEC_LIMITS.maxCpuMillis} thousandths of a core`);
  }
  const memoryMb = input.memoryMb ?? 0;
  if (!Number.isInteger(memoryMb) || memoryMb < 0 || (memoryMb > 0 && memoryMb < SPEC_LIMITS.minMemoryMb) || memoryMb > SPEC_LIMITS.maxMemoryMb) {
    fail("resources.memoryMb", `0 (no limit) or between ${SPEC_LIMITS.minMemoryMb} and ${SPEC_LIMITS.maxMemoryMb} MiB`);
  }
  const image = input.image ?? "";
  if (bytes(image) > SPEC_LIMITS.imageBytes || /\s/.test(image)) fail("image", "not a valid image reference");

  const retryOnExitCodes = parseRetryOnExitCodes(input.retryOnExitCodes ?? "");
  if (retryOnExitCodes !== "" && maxAttempts < 2) {
    fail("retryOnExitCodes", `retrying needs maxAttempts of 2 or more (it is ${maxAttempts}): set maxAttempts too (hodei run --max-attempts N)`);
  }

  // Resources: provider details per job.
  const pullPolicy = input.pullPolicy || DEFAULT_PULL_POLICY;
  if (!isPullPolicy(pullPolicy)) fail("pullPolicy", `"${pullPolicy}" is not a pull policy: ${PULL_POLICIES.join(", ")}`);
  const nodeSelector = input.nodeSelector ?? {};
  const selectorProblems = nodeSelectorProblems(nodeSelector);
  if (selectorProblems.length > 0) fail("nodeSelector", selectorProblems.join("; "));
  const tolerations = normaliseTolerations(input.tolerations ?? []);
  if (typeof tolerations === "string") fail("tolerations", tolerations);

  const secrets = validateSecrets(input.secrets ?? {}, env);
  const notify = validateNotify(input.notify ?? [], defaults.isWebhookPrivateAllowed === true);
  return { command, script, provider, env, timeoutSeconds, labels, maxAttempts, image, idempotencyKey, cpuMillis, memoryMb, retryOnExitCodes, secrets, pullPolicy, nodeSelector, tolerations, notify, ...validateQueueFields(input, defaults) };
}

/** Webhook URLs: at most WEBHOOK_LIMITS.urlsPerJob, each one webhookUrlProblem accepts; duplicates dropped. */
function validateNotify(urls: string[], isPrivateAllowed: boolean): string[] {
  if (urls.length > WEBHOOK_LIMITS.urlsPerJob) fail("notify", `at most ${WEBHOOK_LIMITS.urlsPerJob} URLs (got ${urls.length})`);
  for (const [i, url] of urls.entries()) {
    const problem = webhookUrlProblem(url, isPrivateAllowed);
    if (problem) fail("notify", `URL ${i + 1}: ${problem}`);
  }
  return [...new Set(urls)];
}

/**
 * retryOnExitCodes as given ("3, 4", "any", "") to its normal form ("3,4", "any", ""): codes from 1
 * to 255 (0 is success), at most SPEC_LIMITS.retryExitCodes of them, duplicates dropped, ascending.
 */
function parseRetryOnExitCodes(text: string): string {
  const trimmed = text.trim();
  if (trimmed === "") return "";
  if (trimmed.toLowerCase() === "any") return "any";
  const max = SPEC_LIMITS.retryExitCodes;
  // Bounded before splitting: every code fits in 3 digits and a separator, with room for spaces.
  if (trimmed.length > max * 8) fail("retryOnExitCodes", `at most ${max} exit codes`);
  const entries = trimmed.split(",").map((entry) => entry.trim());
  if (entries.length > max) fail("retryOnExitCodes", `at most ${max} exit codes`);
  const codes = new Set<number>();
  for (const entry of entries) {
    const code = Number(entry);
    if (!/^\d{1,3}$/.test(entry) || code < 1 || code > 255) {
      const shown = entry.length > 20 ? `${entry.slice(0, 20)}...` : entry;
      fail("retryOnExitCodes", `"${shown}" is not an exit code from 1 to 255; give codes separated by commas ("3,4") or "any"`);
    }
    codes.add(code);
  }
  return [...codes].sort((a, b) => a - b).join(",");
}

/** Secrets follow env's name rules and may not shadow an env name. Messages name, never show, a value. */
function validateSecrets(secrets: Record<string, string>, env: Record<string, string>): Record<string, string> {
  const entries = Object.entries(secrets);
  if (entries.length > SPEC_LIMITS.secrets) fail("secrets", `at most ${SPEC_LIMITS.secrets} secrets`);
  let total = 0;
  for (const [name, value] of entries) {
    if (!ENV_NAME.test(name)) fail("secrets", `"${name}" is not a valid variable name (letters, digits, _; not starting with a digit)`);
    if (name.startsWith("HODEI_")) fail("secrets", `"${name}": the HODEI_ prefix is reserved`);
    if (Object.hasOwn(env, name)) fail("secrets", `"${name}" is also in env: give it in one of them`);
    if (value.includes("\0")) fail("secrets", `the value of "${name}" must not contain NUL bytes`);
    if (bytes(value) > SPEC_LIMITS.secretValueBytes) fail("secrets", `the value of "${name}" is longer than ${SPEC_LIMITS.secretValueBytes} bytes`);
    total += bytes(name) + bytes(value);
  }
  if (total > SPEC_LIMITS.secretsBytes) fail("secrets", `too large: ${total} bytes, at most ${SPEC_LIMITS.secretsBytes}`);
  return secrets;
}

/** What a label name may be: ListJobs' label selector checks its keys with it. */
export const LABEL_NAME_PATTERN = LABEL_NAME;

/** Priority, queue timeout and run-at. */
function validateQueueFields(input: Partial<JobSpec>, defaults: SpecDefaults): Pick<JobSpec, "priority" | "queueTimeoutSeconds" | "runAtMs" | "delaySeconds"> {
  const priority = input.priority ?? 0;
  if (!Number.isInteger(priority) || priority < SPEC_LIMITS.minPriority || priority > SPEC_LIMITS.maxPriority) {
    fail("priority", `a whole number between ${SPEC_LIMITS.minPriority} and ${SPEC_LIMITS.maxPriority} (higher runs first), got ${priority}`);
  }
  const queueTimeoutSeconds = input.queueTimeoutSeconds || defaults.queueTimeoutSeconds || 0;
  if (!Number.isInteger(queueTimeoutSeconds) || queueTimeoutSeconds < 0 || queueTimeoutSeconds > SPEC_LIMITS.maxQueueTimeoutSeconds) {
    fail("queueTimeoutSeconds", `0 (the server's default) or a number of seconds up to ${SPEC_LIMITS.maxQueueTimeoutSeconds} (30 days), got ${queueTimeoutSeconds}`);
  }
  const runAtMs = input.runAtMs ?? 0;
  const delaySeconds = input.delaySeconds ?? 0;
  if (!Number.isSafeInteger(runAtMs)) fail("runAt", "not a valid time");
  if (!Number.isInteger(delaySeconds) || delaySeconds < 0 || delaySeconds > SPEC_LIMITS.maxRunAheadSeconds) {
    fail("delaySeconds", `a number of seconds between 0 and ${SPEC_LIMITS.maxRunAheadSeconds} (a year), got ${delaySeconds}`);
  }
  if (runAtMs !== 0 && delaySeconds !== 0) fail("runAt", "give either runAt or delaySeconds, not both");
  if (defaults.nowMs !== undefined && runAtMs > defaults.nowMs + SPEC_LIMITS.maxRunAheadSeconds * 1000) {
    fail("runAt", `at most a year ahead (${new Date(defaults.nowMs + SPEC_LIMITS.maxRunAheadSeconds * 1000).toISOString()}), got ${new Date(runAtMs).toISOString()}`);
  }
  return { priority, queueTimeoutSeconds, runAtMs, delaySeconds };
}

/** When a job submitted at nowMs becomes due: its run-at or delay, never before its submission. */
export function dueAtMs(spec: Pick<JobSpec, "runAtMs" | "delaySeconds">, nowMs: number): number {
  return Math.max(nowMs, spec.runAtMs || nowMs + spec.delaySeconds * 1000);
}
