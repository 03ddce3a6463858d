/**
 * Provider details a job may give beyond its command: when its image is pulled, and (Kubernetes)
 * which nodes its pod may go to: a node selector and tolerations. Validated here as the Kubernetes
 * API server validates them (so a pod is never refused for a field the user wrote), for job specs
 * and for the provider-wide HODEI_K8S_NODE_SELECTOR / HODEI_K8S_TOLERATIONS alike. Pure: no I/O.
 */

/** When the worker's image is pulled. Kubernetes spells them Always, IfNotPresent, Never. */
export const PULL_POLICIES = ["always", "if-not-present", "never"] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];
export const DEFAULT_PULL_POLICY: PullPolicy = "if-not-present";

export function isPullPolicy(value: string): value is PullPolicy {
  return (PULL_POLICIES as readonly string[]).includes(value);
}

/** core/v1 Toleration, with the same field names. */
export interface Toleration {
  /** "" matches every key (operator must then be Exists). */
  key: string;
  operator: "Equal" | "Exists";
  /** "" with Exists. */
  value: string;
  /** "" matches every effect. */
  effect: "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute";
  /** NoExecute only: seconds the pod stays bound once such a taint appears; undefined: for ever. */
  tolerationSeconds?: number;
}

export const PLACEMENT_LIMITS = { nodeSelectorEntries: 64, tolerations: 32 } as const;

const EFFECTS = ["", "NoSchedule", "PreferNoSchedule", "NoExecute"];
const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a Kubernetes qualified name ([prefix/]name), or null when it is one. */
export function qualifiedNameProblem(key: string): string | null {
  const slash = key.indexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : "";
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (slash >= 0 && (prefix === "" || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return "its prefix must be a DNS subdomain (lowercase, e.g. example.com/)";
  if (name === "" || name.length > 63 || !NAME.test(name)) return "a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
  return null;
}

/** Why `value` is not a Kubernetes label value ("" is one), or null when it is one. */
export function labelValueProblem(value: string): string | null {
  if (value === "") return null;
  if (value.length > 63 || !NAME.test(value)) return "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
  return null;
}

/** Returns the problems of a node selector, each naming its entry; empty when it is valid. */
export function nodeSelectorProblems(selector: Record<string, string>): string[] {
  const entries = Object.entries(selector);
  if (entries.length > PLACEMENT_LIMITS.nodeSelectorEntries) return [`at most ${PLACEMENT_LIMITS.nodeSelectorEntries} entries`];
  const problems: string[] = [];
  for (const [key, value] of entries) {
    const keyProblem = qualifiedNameProblem(key);
    if (keyProblem) problems.push(`key "${key}": ${keyProblem}`);
    const valueProblem = labelValueProblem(value);
    if (valueProblem) problems.push(`value of "${key}": ${valueProblem}`);
  }
  return problems;
}

/**
 * A toleration as written (operator and effect may be omitted) made exact, or the reason it is
 * not valid (the API server's own rules: an empty key needs Exists, Exists takes no value,
 * tolerationSeconds only with NoExecute).
 */
export function normaliseToleration(input: Partial<Record<keyof Toleration, unknown>>): Toleration | string {
  const key = input.key ?? "";
  const operator = input.operator === undefined || input.operator === "" ? "Equal" : input.operator;
  const value = input.value ?? "";
  const effect = input.effect ?? "";
  if (typeof key !== "string" || typeof value !== "string" || typeof operator !== "string" || typeof effect !== "string") return "key, operator, value and effect are strings";
  if (key !== "") {
    const problem = qualifiedNameProblem(key);
    if (problem) return `key "${key}": ${problem}`;
  }
  if (operator !== "Equal" && operator !== "Exists") return `operator "${operator}": Equal or Exists`;
  if (key === "" && operator !== "Exists") return "an empty key (every taint) needs operator Exists";
  if (operator === "Exists" && value !== "") return `operator Exists takes no value (got "${value}")`;
  const valueProblem = labelValueProblem(value);
  if (valueProblem) return `value "${value}": ${valueProblem}`;
  if (!EFFECTS.includes(effect)) return `effect "${effect}": NoSchedule, PreferNoSchedule, NoExecute, or empty for all`;
  const seconds = input.tolerationSeconds;
  if (seconds !== undefined && seconds !== null) {
    if (typeof seconds !== "number" || !Number.isSafeInteger(seconds)) return "tolerationSeconds: a whole number of seconds";
    if (effect !== "NoExecute") return "tolerationSeconds is allowed only with effect NoExecute";
    return { key, operator, value, effect, tolerationSeconds: seconds };
  }
  return { key, operator, value, effect: effect as Toleration["effect"] };
}

/** Every toleration made exact, or the first problem (naming its index). */
export function normaliseTolerations(inputs: readonly Partial<Record<keyof Toleration, unknown>>[]): Toleration[] | string {
  if (inputs.length > PLACEMENT_LIMITS.tolerations) return `at most ${PLACEMENT_LIMITS.tolerations} tolerations`;
  const out: Toleration[] = [];
  for (const [i, input] of inputs.entries()) {
    if (!input || typeof input !== "object" || Array.isArray(input)) return `[${i}]: not a toleration object`;
    const toleration = normaliseToleration(input);
    if (typeof toleration === "string") return `[${i}]: ${toleration}`;
    out.push(toleration);
  }
  return out;
}

/**
 * The pod's node selector: the provider's (the operator's constraint) plus the job's. A job may add
 * keys, never change one the provider sets: a node has one value per label, so such a pod could
 * never be scheduled. Returns the conflict in words instead.
 */
export function mergeNodeSelectors(provider: Record<string, string>, job: Record<string, string>): Record<string, string> | string {
  for (const [key, value] of Object.entries(job)) {
    if (key in provider && provider[key] !== value) {
      return `the job asks for node label ${key}=${value}, but the provider only schedules on ${key}=${provider[key]} (HODEI_K8S_NODE_SELECTOR)`;
    }
  }
  return { ...provider, ...job };
}

/** The provider's tolerations, then the job's that are not already among them. */
export function mergeTolerations(provider: readonly Toleration[], job: readonly Toleration[]): Toleration[] {
  const same = (a: Toleration, b: Toleration) =>
    a.key === b.key && a.operator === b.operator && a.value === b.value && a.effect === b.effect && a.tolerationSeconds === b.tolerationSeconds;
  return [...provider, ...job.filter((t) => !provider.some((p) => same(p, t)))];
}
