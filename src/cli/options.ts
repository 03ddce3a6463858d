/**
 * Parsers for option values, used as commander argParsers. Each rejects a bad value with a message
 * that says what to type instead; commander prints it and the CLI exits with the usage exit code.
 */
import { InvalidArgumentError } from "commander";
import { JOB_STATES } from "./format.js";

/** A whole number >= 1, e.g. --timeout 30. */
export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError("expected a positive whole number");
  }
  if (n > 2_147_483_647) throw new InvalidArgumentError("expected at most 2147483647");
  return n;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Repeated -e KEY=VALUE into one record; the value may be empty or contain "=". */
export function collectEnv(pair: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = pair.indexOf("=");
  const key = eq < 0 ? pair : pair.slice(0, eq);
  if (eq < 0 || !ENV_NAME.test(key)) {
    throw new InvalidArgumentError(
      "expected KEY=VALUE, e.g. -e GREETING=hello (KEY: letters, digits and _, not starting with a digit)",
    );
  }
  return { ...previous, [key]: pair.slice(eq + 1) };
}

/**
 * Repeated --secret NAME=VALUE or --secret-file NAME=PATH into one record of NAME to VALUE or PATH.
 * A name given twice is refused (it would silently drop one). Messages never show a value.
 */
export function collectSecret(pair: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = pair.indexOf("=");
  const name = eq < 0 ? pair : pair.slice(0, eq);
  if (eq < 0 || !ENV_NAME.test(name)) {
    throw new InvalidArgumentError("expected NAME=VALUE (--secret) or NAME=PATH (--secret-file); NAME: letters, digits and _, not starting with a digit");
  }
  if (previous && Object.hasOwn(previous, name)) throw new InvalidArgumentError(`secret ${name} is given twice`);
  return { ...previous, [name]: pair.slice(eq + 1) };
}

/** Repeated and/or comma-separated job states, each one checked. */
export function collectStates(value: string, previous: string[] | undefined): string[] {
  const states = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const state of states) {
    if (!JOB_STATES.includes(state)) {
      throw new InvalidArgumentError(`unknown state "${state}"; expected one of: ${JOB_STATES.join(", ")}`);
    }
  }
  return [...(previous ?? []), ...states];
}

/** A whole number, negative or not, e.g. --priority -5. */
export function parseInteger(value: string): number {
  const n = Number(value);
  if (!/^[-+]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError("expected a whole number, e.g. 10 or -5");
  return n;
}

/** A point in time as ISO 8601 with a date and a time (e.g. 2030-01-02T03:04:05Z), in epoch ms. */
export function parseIsoTime(value: string): number {
  const ms = Date.parse(value);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(value.trim()) || Number.isNaN(ms)) {
    throw new InvalidArgumentError('expected an ISO 8601 time, e.g. 2030-01-02T03:04:05Z (a time without "Z" or an offset is local time)');
  }
  return ms;
}

/** Repeated --label KEY=VALUE, kept as "KEY=VALUE" terms (the server checks names and values). */
export function collectLabels(term: string, previous: string[] | undefined): string[] {
  const eq = term.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError("expected KEY=VALUE, e.g. --label team=infra");
  if (term.includes(",")) throw new InvalidArgumentError("one KEY=VALUE per --label (repeat it for more); a value cannot hold a comma");
  return [...(previous ?? []), term];
}
