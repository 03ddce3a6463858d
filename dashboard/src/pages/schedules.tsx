/**
 * Schedules: what `hodei schedule ls` shows (name, cron and time zone, next run, last job, paused,
 * ticks fired and skipped with the last reason), polled every 2 s and paged by the server's cursor
 * (ListSchedules, which needs "read"). /schedules?name=N shows one schedule (GetSchedule), which a
 * key with only "submit" may read for its own schedules: a job's page links there. Pause, resume and
 * remove (after a confirmation) are enabled only for a key that may use them: admin, or submit on
 * a schedule it created (session.tsx canChangeSchedule); a disabled button says why.
 */
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type KeyboardEvent, type ReactNode, useState } from "react";
import type { Schedule } from "../../../src/gen/hodei/v1/api_pb.js";
import { Code, codeOf, schedules } from "../api";
import { ago, commandOf, isoTime, ms } from "../format";
import { Link } from "../router";
import { type Caller, canChangeSchedule, useCaller } from "../session";
import { ErrorBox, Page, ShortId } from "../widgets";

const POLL_MS = 2000;
const CREATE_HINT = "hodei schedule create NAME --cron EXPR -- CMD";

type Verb = "pause" | "resume" | "remove";

/** `limit`: the page size (?limit=, 1 to 500; 0: the server's 100). */
export function SchedulesPage({ name, limit }: { name: string; limit: number }) {
  const { caller } = useCaller();
  const client = useQueryClient();
  const [cursors, setCursors] = useState<string[]>([""]);
  const [removing, setRemoving] = useState<Schedule | null>(null);
  const pageToken = cursors[cursors.length - 1];

  const list = useQuery({
    queryKey: ["schedules", limit, pageToken],
    queryFn: () => schedules.listSchedules({ limit, pageToken }),
    refetchInterval: POLL_MS,
    placeholderData: keepPreviousData,
    enabled: !name && caller.canRead,
  });
  const one = useQuery({
    queryKey: ["schedule", name],
    queryFn: () => schedules.getSchedule({ name }),
    refetchInterval: POLL_MS,
    enabled: Boolean(name),
  });
  const change = useMutation({
    mutationFn: ({ verb, name }: { verb: Verb; name: string }) =>
      verb === "pause" ? schedules.pauseSchedule({ name }) : verb === "resume" ? schedules.resumeSchedule({ name }) : schedules.deleteSchedule({ name }),
    onSettled: () => client.invalidateQueries({ predicate: (q) => q.queryKey[0] === "schedules" || q.queryKey[0] === "schedule" }),
  });

  const title = name ? (
    <>
      <Link to="/schedules">Schedules</Link> <span className="muted">/</span> {name}
    </>
  ) : (
    "Schedules"
  );
  if (!name && !caller.canRead) {
    return (
      <Page title="Schedules">
        <p className="muted">
          This key has no "read" scope, so it cannot list schedules. A job a schedule fired links to its schedule from the job's page.
        </p>
      </Page>
    );
  }
  const query = name ? one : list;
  const rows = name ? (one.data ? [one.data] : []) : (list.data?.schedules ?? []);
  const isBusy = query.isPending || (!name && list.isPlaceholderData);
  const isNotFound = name && codeOf(one.error) === Code.NotFound;

  return (
    <Page title={title} loaded={query.isSuccess} actions={<span className="muted small">{query.isFetching ? "updating…" : `live · every ${POLL_MS / 1000} s`}</span>}>
      {isNotFound ? (
        <div className="error-box" role="alert">
          No schedule named {name}: it was removed, or never existed. The jobs it fired stay:{" "}
          <Link to={`/?label=${encodeURIComponent(`hodei.io/schedule=${name}`)}`}>its jobs</Link> · <Link to="/schedules">all schedules</Link>
        </div>
      ) : query.error ? (
        <ErrorBox error={query.error} />
      ) : null}
      {change.error ? <ErrorBox error={change.error} /> : null}
      {!caller.isAdmin && rows.some((s) => !canChangeSchedule(caller, s)) && (
        <p className="muted small">{whyNot(caller)}</p>
      )}
      {!isNotFound && (
        <ScheduleTable
          rows={rows}
          isBusy={isBusy}
          empty={
            isBusy ? (
              "loading…"
            ) : (
              <>
                No schedules yet. Create one with the CLI: <code>{CREATE_HINT}</code>, e.g.{" "}
                <code>hodei schedule create nightly --cron "0 3 * * *" --timezone Europe/Madrid -- ./backup.sh</code>
              </>
            )
          }
          caller={caller}
          pending={change.isPending ? change.variables : undefined}
          onChange={(verb, s) => (verb === "remove" ? setRemoving(s) : change.mutate({ verb, name: s.name }))}
        />
      )}
      {!name && (cursors.length > 1 || list.data?.nextPageToken) ? (
        <div className="toolbar pager">
          <button type="button" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))} aria-label="previous page">
            ← previous
          </button>
          <span className="muted small">page {cursors.length}</span>
          <button type="button" disabled={!list.data?.nextPageToken} onClick={() => setCursors([...cursors, list.data!.nextPageToken])} aria-label="next page">
            next →
          </button>
        </div>
      ) : null}
      {removing && (
        <ConfirmRemove
          schedule={removing}
          onCancel={() => setRemoving(null)}
          onConfirm={() => {
            change.mutate({ verb: "remove", name: removing.name });
            setRemoving(null);
          }}
        />
      )}
    </Page>
  );
}

function whyNot(caller: Caller): string {
  return caller.canSubmit
    ? "This key may pause, resume and remove only the schedules it created; an admin key may change any."
    : 'Pausing, resuming and removing a schedule needs the "submit" scope (for the schedules this key created) or "admin".';
}

function ScheduleTable({
  rows,
  isBusy,
  empty,
  caller,
  pending,
  onChange,
}: {
  rows: Schedule[];
  isBusy: boolean;
  empty: ReactNode;
  caller: Caller;
  pending: { verb: Verb; name: string } | undefined;
  onChange: (verb: Verb, schedule: Schedule) => void;
}) {
  const now = Date.now();
  return (
    <table className={isBusy ? "table schedules stale" : "table schedules"} aria-label="schedules" aria-busy={isBusy}>
      <thead>
        <tr>
          <th scope="col">name</th>
          <th scope="col">cron</th>
          <th scope="col">next run</th>
          <th scope="col">last job</th>
          <th scope="col">status</th>
          <th scope="col" className="num">fired</th>
          <th scope="col" className="num">skipped</th>
          <th scope="col">last skip</th>
          <th scope="col">command</th>
          <th scope="col">created by</th>
          <th scope="col">
            <span className="visually-hidden">actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 ? (
          <tr>
            <td colSpan={11} className="empty">
              {empty}
            </td>
          </tr>
        ) : (
          rows.map((s) => {
            const isAllowed = canChangeSchedule(caller, s);
            const why = isAllowed ? undefined : whyNot(caller);
            const isPending = pending?.name === s.name;
            const next = ms(s.nextRunAt);
            const command = s.template ? commandOf(s.template) : "";
            return (
              <tr key={s.name} data-schedule={s.name} data-paused={String(s.paused)}>
                <th scope="row" data-col="name">
                  <Link to={`/schedules?name=${encodeURIComponent(s.name)}`}>{s.name}</Link>
                </th>
                <td data-col="cron">
                  <code>{s.cron}</code>
                  <span className="muted small"> {s.timezone || "UTC"}</span>
                </td>
                <td data-col="next" title={isoTime(next)}>
                  {s.paused ? <span className="muted">— paused</span> : next === null ? <span className="muted">no tick remains</span> : ago(next, now)}
                </td>
                <td data-col="last-job">
                  {s.lastJobId ? (
                    <>
                      <Link to={`/jobs/${s.lastJobId}`}>
                        <ShortId id={s.lastJobId} />
                      </Link>{" "}
                      <span className="muted small" title={isoTime(ms(s.lastRunAt))}>
                        {ago(ms(s.lastRunAt), now)}
                      </span>{" "}
                      ·{" "}
                      <Link to={`/?label=${encodeURIComponent(`hodei.io/schedule=${s.name}`)}`} className="small" title={`the jobs ${s.name} fired`}>
                        all
                      </Link>
                    </>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td data-col="status">
                  <span className={`badge state-${s.paused ? "paused" : "active"}`}>{s.paused ? "paused" : "active"}</span>
                </td>
                <td data-col="fired" className="num">
                  {String(s.firedTicks)}
                </td>
                <td data-col="skipped" className="num">
                  {String(s.skippedTicks)}
                </td>
                <td data-col="last-skip" className="small ellipsis" title={s.lastSkipReason ? `${isoTime(ms(s.lastSkippedAt))}: ${s.lastSkipReason}` : undefined}>
                  {s.lastSkipReason || <span className="muted">—</span>}
                </td>
                <td data-col="command" className="mono small ellipsis" title={command}>
                  {command}
                </td>
                <td data-col="created-by" className="small">
                  {s.createdBy || "—"}
                </td>
                <td className="row-actions">
                  <button
                    type="button"
                    disabled={!isAllowed || isPending}
                    title={why}
                    aria-label={`${s.paused ? "Resume" : "Pause"} ${s.name}`}
                    onClick={() => onChange(s.paused ? "resume" : "pause", s)}
                  >
                    {isPending && pending?.verb !== "remove" ? (s.paused ? "resuming…" : "pausing…") : s.paused ? "Resume" : "Pause"}
                  </button>
                  <button type="button" className="danger" disabled={!isAllowed || isPending} title={why} aria-label={`Remove ${s.name}`} onClick={() => onChange("remove", s)}>
                    {isPending && pending?.verb === "remove" ? "removing…" : "Remove"}
                  </button>
                </td>
              </tr>
            );
          })
        )}
      </tbody>
    </table>
  );
}

/** Tab and Shift+Tab go round the dialog's buttons and never leave it (a modal dialog holds the focus). */
function keepFocusIn(e: KeyboardEvent<HTMLElement>): void {
  const buttons = [...e.currentTarget.querySelectorAll("button")];
  if (buttons.length === 0) return;
  const at = buttons.indexOf(document.activeElement as HTMLButtonElement);
  e.preventDefault();
  buttons[at < 0 ? 0 : (at + (e.shiftKey ? buttons.length - 1 : 1)) % buttons.length].focus();
}

/** Asks before removing: a removed schedule fires no more jobs and cannot be brought back (only created anew). */
function ConfirmRemove({ schedule, onCancel, onConfirm }: { schedule: Schedule; onCancel: () => void; onConfirm: () => void }) {
  return (
    <div className="overlay" onClick={onCancel}>
      <div
        className="dialog"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby="remove-title"
        aria-describedby="remove-text"
        onClick={(e) => e.stopPropagation()}
        onKeyDown={(e) => {
          if (e.key === "Escape") onCancel();
          else if (e.key === "Tab") keepFocusIn(e);
        }}
      >
        <h3 id="remove-title">Remove schedule {schedule.name}?</h3>
        <p id="remove-text">
          It fires no more jobs. The {String(schedule.firedTicks)} jobs it fired stay. To bring it back, create it again with <code>{CREATE_HINT}</code>.
        </p>
        <div className="actions">
          <button type="button" className="danger" onClick={onConfirm}>
            Remove {schedule.name}
          </button>
          <button type="button" onClick={onCancel} autoFocus>
            Keep it
          </button>
        </div>
      </div>
    </div>
  );
}
