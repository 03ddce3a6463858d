/**
 * ListJobs' label_selector: "k=v,k2=v2", every term required (AND). A key is a label name as a job
 * may have it (core/job-spec.ts); the value is everything after the first "=", up to the next comma
 * (so a value holding a comma cannot be selected). At most MAX_LABEL_TERMS terms: each becomes a
 * lookup in the query. Anything else is refused with InvalidInputError naming labelSelector.
 */
import { InvalidInputError } from "../core/errors.js";
import { LABEL_NAME_PATTERN, SPEC_LIMITS } from "../core/job-spec.js";

export const MAX_LABEL_TERMS = 8;

export function parseLabelSelector(selector: string): [key: string, value: string][] {
  const fail = (message: string) => new InvalidInputError(`labelSelector: ${message}`, "labelSelector");
  if (selector.trim() === "") return [];
  // Split at most one entry past the limit, so that a huge selector costs no more than the limit.
  const parts = selector.split(",", MAX_LABEL_TERMS + 1);
  if (parts.length > MAX_LABEL_TERMS) throw fail(`at most ${MAX_LABEL_TERMS} terms (key=value, comma-separated)`);
  const terms = new Map<string, string>();
  for (const part of parts) {
    const term = part.trim();
    const eq = term.indexOf("=");
    const shown = term.length > 40 ? `${term.slice(0, 40)}...` : term;
    if (eq <= 0) throw fail(`"${shown}" is not key=value (e.g. team=infra,env=prod)`);
    const key = term.slice(0, eq);
    const value = term.slice(eq + 1);
    if (!LABEL_NAME_PATTERN.test(key) || Buffer.byteLength(key) > SPEC_LIMITS.labelBytes) throw fail(`"${shown}": "${key.slice(0, 40)}" is not a valid label name`);
    if (Buffer.byteLength(value) > SPEC_LIMITS.labelBytes) throw fail(`"${shown}": the value is longer than ${SPEC_LIMITS.labelBytes} bytes`);
    if (terms.has(key) && terms.get(key) !== value) throw fail(`"${key}" is given two values; a job has one value per label`);
    terms.set(key, value);
  }
  return [...terms];
}
