/**
 * `hodei run` options for a job's resources and provider details: --cpu, --memory, --pull,
 * --node-selector, --toleration. Each parser checks the syntax and says what to type instead; the
 * server validates the values (a node selector key, a toleration's rules) and names the field.
 */
import { InvalidArgumentError } from "commander";

/** --cpu 0.5: cores (fractional) as thousandths of a core, the API's cpu_millis. */
export function parseCpuCores(value: string): number {
  const text = value.trim();
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text)) throw new InvalidArgumentError("expected a number of CPU cores, e.g. 0.5 or 2");
  const millis = Number(text) * 1000;
  if (!Number.isFinite(millis) || millis <= 0) throw new InvalidArgumentError("expected more than 0 cores, e.g. 0.5");
  if (Math.abs(millis - Math.round(millis)) > 1e-6) throw new InvalidArgumentError("expected at most 3 decimals (thousandths of a core), e.g. 0.25");
  if (millis > 2_147_483_647) throw new InvalidArgumentError("too many cores");
  return Math.round(millis);
}

/** --memory 512: MiB, a whole number. */
export function parseMemoryMb(value: string): number {
  const text = value.trim();
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new InvalidArgumentError("expected a whole number of MiB, e.g. 512 (no unit)");
  const n = Number(text);
  if (n > 2_147_483_647) throw new InvalidArgumentError("expected at most 2147483647 MiB");
  return n;
}

const PULL_POLICIES = ["always", "if-not-present", "never"];

/** --pull always|if-not-present|never. */
export function parsePullPolicy(value: string): string {
  if (!PULL_POLICIES.includes(value)) throw new InvalidArgumentError(`expected one of: ${PULL_POLICIES.join(", ")}`);
  return value;
}

/** Repeated --node-selector KEY=VALUE into one record. */
export function collectNodeSelector(pair: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = pair.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError("expected KEY=VALUE, e.g. --node-selector disktype=ssd");
  return { ...previous, [pair.slice(0, eq)]: pair.slice(eq + 1) };
}

export interface TolerationOption {
  key: string;
  operator: string;
  value: string;
  effect: string;
  tolerationSeconds?: bigint;
}

const EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const TOLERATION_HINT = "expected KEY[=VALUE][:EFFECT[:SECONDS]] (e.g. dedicated=hodei:NoSchedule, gpu:NoSchedule, spot:NoExecute:300), or * for every taint";

/**
 * Repeated --toleration, kubectl's taint syntax: KEY=VALUE:EFFECT tolerates that taint (Equal),
 * KEY:EFFECT and KEY any value of it (Exists), SECONDS after NoExecute is tolerationSeconds, and
 * `*` every taint.
 */
export function collectToleration(spec: string, previous: TolerationOption[] | undefined): TolerationOption[] {
  const list = previous ?? [];
  if (spec === "*") return [...list, { key: "", operator: "Exists", value: "", effect: "" }];
  const [head, effect = "", seconds, ...rest] = spec.split(":");
  if (rest.length > 0 || head === "" || (effect !== "" && !EFFECTS.includes(effect))) throw new InvalidArgumentError(TOLERATION_HINT);
  if (seconds !== undefined && (effect !== "NoExecute" || !/^\d+$/.test(seconds))) throw new InvalidArgumentError(`${TOLERATION_HINT}; SECONDS only after NoExecute`);
  const eq = head.indexOf("=");
  const key = eq < 0 ? head : head.slice(0, eq);
  if (key === "") throw new InvalidArgumentError(TOLERATION_HINT);
  const toleration: TolerationOption =
    eq < 0 ? { key, operator: "Exists", value: "", effect } : { key, operator: "Equal", value: head.slice(eq + 1), effect };
  if (seconds !== undefined) toleration.tolerationSeconds = BigInt(seconds);
  return [...list, toleration];
}
