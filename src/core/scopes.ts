/**
 * What an API key may do: its scopes. Pure rules, no I/O; server/access.ts applies them to calls.
 *
 *   read                 read jobs, logs, workers, OTP tokens and providers (env values included)
 *   submit               submit jobs (with provider:P for provider P), cancel and read its own jobs
 *   admin                everything, API keys included; implies every other scope
 *   provider:local, provider:docker, provider:kubernetes
 *                        run jobs on that provider (with submit)
 *
 * Invariant: a list of scopes that leaves here is valid, without duplicates, in the order above.
 */
import { InvalidInputError } from "./errors.js";

/** The providers a job can name (config.ts enables some of them). */
const PROVIDER_NAMES = ["local", "docker", "kubernetes"] as const;

export const SCOPES = ["read", "submit", "admin", ...PROVIDER_NAMES.map((p) => `provider:${p}` as const)] as const;
export type Scope = (typeof SCOPES)[number];

/** Scopes of a name, a list, or comma-separated entries ("submit,provider:local"); at least one. */
export function parseScopes(entries: readonly string[]): Scope[] {
  const wanted = new Set<string>();
  for (const entry of entries.flatMap((e) => e.split(","))) {
    const scope = entry.trim();
    if (!scope) continue;
    if (!isScope(scope)) {
      const shown = scope.length > 40 ? `${scope.slice(0, 40)}...` : scope;
      throw new InvalidInputError(`scopes: unknown scope "${shown}"; use ${SCOPES.join(", ")}`, "scopes");
    }
    wanted.add(scope);
  }
  if (wanted.size === 0) throw new InvalidInputError(`scopes: at least one of ${SCOPES.join(", ")}`, "scopes");
  return SCOPES.filter((scope) => wanted.has(scope));
}

export function isScope(text: string): text is Scope {
  return (SCOPES as readonly string[]).includes(text);
}

/** Whether `scopes` grant `needed`: they hold it, or admin. */
export function grants(scopes: readonly Scope[], needed: Scope): boolean {
  return scopes.includes("admin") || scopes.includes(needed);
}

/** The scope that lets a key run jobs on `provider`. */
export function providerScope(provider: string): Scope {
  const scope = `provider:${provider}`;
  if (!isScope(scope)) throw new InvalidInputError(`provider: unknown provider "${provider}"`, "provider");
  return scope;
}
