/**
 * Who may do what on the client API, in one place: the scope each method needs (METHOD_SCOPES)
 * and the rules that need the job itself (whose it is, which provider it runs on). The auth
 * interceptor (authentication.ts) applies the method rule to every call before its handler runs and
 * hands the handler the Caller; handlers apply the job rules once they have read the job.
 *
 * Invariants: a method without an entry here is refused for everyone (fail closed), and so is a
 * handler reached without the interceptor (the default Caller has no scope).
 */
import { createContextKey } from "@connectrpc/connect";
import { PermissionDeniedError, UnauthenticatedError } from "../core/errors.js";
import { grants, providerScope, type Scope } from "../core/scopes.js";

export interface Caller {
  /** The API key's name; null when auth is off (the caller then holds admin). */
  keyName: string | null;
  scopes: readonly Scope[];
  /** Throws UnauthenticatedError once the key is revoked: long-lived calls (log followers) ask again. */
  assertActive(): Promise<void>;
}

const NOBODY: Caller = {
  keyName: null,
  scopes: [],
  assertActive: () => Promise.reject(new UnauthenticatedError("this call was not authenticated")),
};

/** The authenticated caller of the current call, set by the auth interceptor. */
export const CALLER = createContextKey<Caller>(NOBODY, { description: "hodei caller" });

/** The caller of a call when HODEI_AUTH=off: anyone, with every right, and no name. */
export const UNRESTRICTED: Caller = { keyName: null, scopes: ["admin"], assertActive: () => Promise.resolve() };

/**
 * For each method, the scopes of which any one lets a key call it (admin implies all). Where a
 * second scope is listed, the handler narrows it: submit reads and cancels only the key's own jobs.
 */
const METHOD_SCOPES: Record<string, readonly Scope[]> = {
  "hodei.v1.JobService/SubmitJob": ["submit"], // and provider:P: requireProvider
  "hodei.v1.JobService/GetJob": ["read", "submit"], // submit: own jobs only, env values withheld
  "hodei.v1.JobService/ListJobs": ["read"],
  "hodei.v1.JobService/CancelJob": ["submit"], // own jobs only; admin any: requireJobCancel
  "hodei.v1.JobService/GetLogs": ["read", "submit"], // submit: own jobs only
  "hodei.v1.JobService/ListWorkers": ["read"],
  "hodei.v1.JobService/ListTokens": ["read"],
  "hodei.v1.JobService/ListProviders": ["read"],
  "hodei.v1.JobService/RerunJob": ["submit"], // and provider:P, and the original readable: requireJobRead
  "hodei.v1.ScheduleService/CreateSchedule": ["submit"], // and provider:P for the template's provider
  "hodei.v1.ScheduleService/GetSchedule": ["read", "submit"], // submit: own schedules only, env values withheld
  "hodei.v1.ScheduleService/ListSchedules": ["read"],
  "hodei.v1.ScheduleService/PauseSchedule": ["submit"], // own schedules only; admin any: requireScheduleChange
  "hodei.v1.ScheduleService/ResumeSchedule": ["submit"], // as PauseSchedule
  "hodei.v1.ScheduleService/DeleteSchedule": ["submit"], // as PauseSchedule
  "hodei.v1.KeyService/CreateKey": ["admin"],
  "hodei.v1.KeyService/ListKeys": ["admin"],
  "hodei.v1.KeyService/RevokeKey": ["admin"],
};

/** The method's rule, for tests: undefined when it has none (then nobody may call it). */
export function methodScopes(service: string, method: string): readonly Scope[] | undefined {
  return METHOD_SCOPES[`${service}/${method}`];
}

export function requireMethod(caller: Caller, service: string, method: string): void {
  const anyOf = methodScopes(service, method);
  if (!anyOf) throw new PermissionDeniedError(`${service}/${method} has no access rule, so nobody may call it`);
  if (anyOf.some((scope) => grants(caller.scopes, scope))) return;
  const alternative = anyOf[1] ? ` (or "${anyOf[1]}", for the jobs the key submitted)` : "";
  throw denied(caller, anyOf[0], `to call ${method}${alternative}`);
}

/** SubmitJob on `provider` needs provider:<provider>. */
export function requireProvider(caller: Caller, provider: string): void {
  const needed = providerScope(provider);
  if (!grants(caller.scopes, needed)) throw denied(caller, needed, `to run jobs on provider ${provider}`);
}

/** Whether the caller submitted the job (a job no key submitted is nobody's). */
function isOwn(caller: Caller, submittedBy: string | null): boolean {
  return caller.keyName !== null && submittedBy === caller.keyName;
}

/** GetJob, GetLogs: read, or the caller's own job. */
export function requireJobRead(caller: Caller, job: { id: string; submittedBy: string | null }): void {
  if (grants(caller.scopes, "read") || isOwn(caller, job.submittedBy)) return;
  throw denied(caller, "read", `to read job ${job.id}, which it did not submit`);
}

/** CancelJob: the caller's own job with submit, any job with admin. */
export function requireJobCancel(caller: Caller, job: { id: string; submittedBy: string | null }): void {
  if (grants(caller.scopes, "admin") || (grants(caller.scopes, "submit") && isOwn(caller, job.submittedBy))) return;
  throw denied(caller, "admin", `to cancel job ${job.id}, which it did not submit (a submit key cancels only its own jobs)`);
}

/** GetSchedule: read, or the caller's own schedule (a schedule's jobs are submitted as the key that created it). */
export function requireScheduleRead(caller: Caller, schedule: { name: string; created_by: string | null }): void {
  if (grants(caller.scopes, "read") || isOwn(caller, schedule.created_by)) return;
  throw denied(caller, "read", `to read schedule ${schedule.name}, which it did not create`);
}

/** Pause, resume, delete: the caller's own schedule with submit, any schedule with admin. */
export function requireScheduleChange(caller: Caller, schedule: { name: string; created_by: string | null }): void {
  if (grants(caller.scopes, "admin") || (grants(caller.scopes, "submit") && isOwn(caller, schedule.created_by))) return;
  throw denied(caller, "admin", `to change schedule ${schedule.name}, which it did not create (a submit key changes only its own schedules)`);
}

/** Job env values may hold secrets: shown only with read. */
export function maySeeEnvValues(caller: Caller): boolean {
  return grants(caller.scopes, "read");
}

function denied(caller: Caller, needed: Scope, what: string): PermissionDeniedError {
  const has = caller.scopes.length > 0 ? caller.scopes.join(",") : "none";
  return new PermissionDeniedError(
    `API key "${caller.keyName ?? ""}" lacks the scope "${needed}" ${what}; its scopes: ${has}. A key's scopes do not change: an admin creates a key that has it (hodei keys create --name NAME --scope ...,${needed})`,
  );
}
