/**
 * The client's schedules (ScheduleService): jobs the server submits on a cron schedule, one per
 * tick, each labelled hodei.io/schedule=<name>. The template is the spec submit() takes. Errors are
 * the job methods' (errors.ts): an unknown name is a NotFoundError, a refused field an
 * InvalidArgumentError whose message names it.
 */
import type { Client } from "@connectrpc/connect";
import type { ListSchedulesResponse, Schedule, ScheduleService } from "../gen/hodei/v1/api_pb.js";
import type { JobSpec } from "./client.js";
import { mapErrors } from "./errors.js";

export interface ScheduleSpec {
  /** Lowercase letters, digits and "-", at most 63, starting and ending with a letter or digit. */
  name: string;
  /** 5 fields (minute hour day month weekday) or 6 with seconds first, e.g. "0 3 * * *" or "* * * * * *". */
  cron: string;
  /** IANA time zone the expression is read in, e.g. "Europe/Madrid"; default UTC. */
  timezone?: string;
  /** Ticks missed while the server was down: "skip" (default) or "run-once" (one job for the latest). */
  missed?: string;
  /** "allow" (default), or "forbid": skip a tick while the previous job has not ended. */
  concurrency?: string;
  /** Create it paused; resume() starts it. */
  paused?: boolean;
  /** The job each tick submits, as submit() takes it; no secrets, idempotencyKey, runAt or delaySeconds. */
  template: JobSpec;
}

/** ListSchedules' paging: limit 1 to 500 (default 100), pageToken from the previous page. */
export interface ScheduleFilter {
  limit?: number;
  pageToken?: string;
}

export interface ScheduleClient {
  /** Creates a schedule; resolves with it as stored (nextRunAt set unless paused). */
  create(spec: ScheduleSpec): Promise<Schedule>;
  get(name: string): Promise<Schedule>;
  /** One page of schedules by name; `nextPageToken` is "" on the last page. */
  list(filter?: ScheduleFilter): Promise<ListSchedulesResponse>;
  /** Its ticks fire nothing until resumed; pausing a paused schedule answers it unchanged. */
  pause(name: string): Promise<Schedule>;
  /** Goes on from its next tick after now (ticks while it was paused are not fired). */
  resume(name: string): Promise<Schedule>;
  /** Removes it; resolves with it as it was. The jobs it submitted stay. */
  remove(name: string): Promise<Schedule>;
}

export function createScheduleClient(api: Client<typeof ScheduleService>): ScheduleClient {
  return {
    create: (spec) =>
      mapErrors(
        api.createSchedule({
          name: spec.name,
          cron: spec.cron,
          timezone: spec.timezone ?? "",
          missed: spec.missed ?? "",
          concurrency: spec.concurrency ?? "",
          paused: spec.paused === true,
          template: spec.template,
        }),
      ),
    get: (name) => mapErrors(api.getSchedule({ name })),
    list: (filter = {}) => mapErrors(api.listSchedules({ limit: filter.limit ?? 0, pageToken: filter.pageToken ?? "" })),
    pause: (name) => mapErrors(api.pauseSchedule({ name })),
    resume: (name) => mapErrors(api.resumeSchedule({ name })),
    remove: (name) => mapErrors(api.deleteSchedule({ name })),
  };
}
