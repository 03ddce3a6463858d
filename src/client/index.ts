/**
 * `hodei/client`: the typed client of a Hodei server, for Node programs.
 *
 *   import { createClient, NotFoundError } from "hodei/client";
 *   const hodei = createClient({ baseUrl: "http://127.0.0.1:7070", token: process.env.HODEI_TOKEN });
 *   const job = await hodei.submit({ command: ["echo", "hello"] });
 *   for await (const entry of hodei.logs(job.id, { follow: true })) process.stdout.write(entry.data);
 *   const ended = await hodei.wait(job.id, { timeoutMs: 60_000 });
 *   await hodei.schedules.create({ name: "nightly", cron: "0 3 * * *", template: { command: ["./backup.sh"] } });
 */
export { createClient, type HodeiClient, type JobFilter, type JobSpec, type WaitOptions } from "./client.js";
export {
  AlreadyExistsError,
  type ErrorCode,
  FailedPreconditionError,
  HodeiError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
  WaitTimeoutError,
} from "./errors.js";
export type { LogsOptions } from "./logs.js";
export type { ScheduleClient, ScheduleFilter, ScheduleSpec } from "./schedules.js";
export type { ClientOptions } from "./transport.js";
export type { Attempt, Job, ListJobsResponse, ListSchedulesResponse, LogEntry, Resources, Schedule, Timeline, Toleration } from "../gen/hodei/v1/api_pb.js";
