/**
 * What a user may submit, and the limits that keep one job from hurting the control plane.
 * validateJobSpec either returns a normalised spec or throws InvalidInputError naming the field;
 * nothing is stored before it passes.
 */
import { InvalidInputError } from "./errors.js";
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
  // Resources: provider details per job (core/placement.ts).
  /** When the image is pulled (docker, kubernetes). Default if-not-present. */
  pullPolicy: PullPolicy;
  /** Kubernetes: node labels the pod must be scheduled on, added to the provider's. */
  nodeSelector: Record<string, string>;
  /** Kubernetes: taints the pod tolerates, added to the provider's. */
  tolerations: Toleration[];
}

export const SPEC_LIMITS = {
  commandArgs: 4096,
  commandBytes: 256 * 1024,
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
} as const;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.\-/]*$/;

export interface SpecDefaults {
  provider: string;
  timeoutSeconds: number;
  /** Names of the enabled providers; anything else is refused. */
  providers: readonly string[];
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

  // Resources: provider details per job.
  const pullPolicy = input.pullPolicy || DEFAULT_PULL_POLICY;
  if (!isPullPolicy(pullPolicy)) fail("pullPolicy", `"${pullPolicy}" is not a pull policy: ${PULL_POLICIES.join(", ")}`);
  const nodeSelector = input.nodeSelector ?? {};
  const selectorProblems = nodeSelectorProblems(nodeSelector);
  if (selectorProblems.length > 0) fail("nodeSelector", selectorProblems.join("; "));
  const tolerations = normaliseTolerations(input.tolerations ?? []);
  if (typeof tolerations === "string") fail("tolerations", tolerations);

  return { command, script, provider, env, timeoutSeconds, labels, maxAttempts, image, idempotencyKey, cpuMillis, memoryMb, pullPolicy, nodeSelector, tolerations };
}
