/**
 * One job: its state, exit code, submitter, schedule and trace id, command and settings, its
 * attempts as a waterfall and a table, its webhook deliveries, and its log, live. Polled every
 * second until its worker is destroyed (then every 5 s while a delivery is pending); its end comes
 * at once from the log stream's last entry. Cancel and rerun are
 * shown only to keys that may use them (session.tsx).
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { jobs } from "../api";
import { commandOf, duration, FINISHED, isoTime, ms } from "../format";
import { LogView } from "../log/log-view";
import { Link, navigate } from "../router";
import { canCancel, canRerun, useCaller } from "../session";
import { ErrorBox, Page, ShortId, StateBadge } from "../widgets";
import { Waterfall } from "./waterfall";
import { Deliveries } from "./webhooks";

/** How often an ended job is read again while a webhook delivery of it is pending, ms. */
const DELIVERY_POLL_MS = 5000;

export function JobPage({ id }: { id: string }) {
  const { caller } = useCaller();
  const client = useQueryClient();
  const job = useQuery({
    queryKey: ["job", id],
    queryFn: () => jobs.getJob({ id }),
    refetchInterval: (q) => {
      const data = q.state.data;
      if (!data || !FINISHED.has(data.state) || !data.timeline?.destroyed) return 1000;
      // Ended: only a webhook delivery still being tried can change (retried for up to a day).
      return data.deliveries.some((d) => d.state === "pending") ? DELIVERY_POLL_MS : false;
    },
  });
  const [now, setNow] = useState(Date.now());
  const isFinished = job.data ? FINISHED.has(job.data.state) : false;
  useEffect(() => {
    if (isFinished) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [isFinished]);

  const cancel = useMutation({
    mutationFn: () => jobs.cancelJob({ id }),
    onSuccess: (data) => client.setQueryData(["job", id], data),
  });
  const rerun = useMutation({
    mutationFn: () => jobs.rerunJob({ id }),
    onSuccess: (data) => navigate(`/jobs/${data.id}`),
  });

  if (job.error) return <Page title={<>Job <ShortId id={id} /></>}><ErrorBox error={job.error} /></Page>;
  if (!job.data) return <Page title={<>Job <ShortId id={id} /></>}><p className="muted" role="status" aria-busy="true">loading…</p></Page>;
  const j = job.data;
  const finishedAt = ms(j.finishedAt);
  const actions = (
    <>
      {!isFinished && canCancel(caller, j) && (
        <button type="button" className="danger" onClick={() => cancel.mutate()} disabled={cancel.isPending} data-shortcut="cancel">
          {cancel.isPending ? "canceling…" : "Cancel"}
        </button>
      )}
      {isFinished && canRerun(caller, j) && (
        <button
          type="button"
          onClick={() => rerun.mutate()}
          disabled={rerun.isPending || j.secretNames.length > 0}
          title={j.secretNames.length > 0 ? `Its secrets (${j.secretNames.join(", ")}) were deleted when it ended: submit it again with them` : undefined}
          data-shortcut="rerun"
        >
          {rerun.isPending ? "submitting…" : "Rerun"}
        </button>
      )}
    </>
  );
  return (
    <Page
      loaded
      title={
        <>
          Job <code className="id" data-testid="job-id">{j.id}</code> <StateBadge state={j.state} />
        </>
      }
      actions={actions}
    >
      {cancel.error ? <ErrorBox error={cancel.error} /> : null}
      {rerun.error ? <ErrorBox error={rerun.error} /> : null}
      <dl className="facts">
        <div>
          <dt>state</dt>
          <dd data-testid="job-state">{j.state}</dd>
        </div>
        <div>
          <dt>exit code</dt>
          <dd data-testid="job-exit">{j.exitCode ?? "—"}</dd>
        </div>
        <div>
          <dt>submitted by</dt>
          <dd>{j.submittedBy || "—"}</dd>
        </div>
        <div>
          <dt>provider</dt>
          <dd>
            {j.provider}
            {j.image && <span className="muted"> · {j.image}</span>}
          </dd>
        </div>
        <div>
          <dt>created</dt>
          <dd title={isoTime(ms(j.createdAt))}>{isoTime(ms(j.createdAt))}</dd>
        </div>
        <div>
          <dt>{finishedAt ? "ran" : "running for"}</dt>
          <dd>{duration(ms(j.timeline?.started), finishedAt ?? (j.state === "running" ? now : null)) || "—"}</dd>
        </div>
        <div>
          <dt>attempts</dt>
          <dd>
            {j.attempts} of {j.maxAttempts}
            {j.uncountedAttempts > 0 && <span className="muted"> (+{j.uncountedAttempts} not counted)</span>}
          </dd>
        </div>
        <div>
          <dt>timeout</dt>
          <dd>{j.timeoutSeconds} s</dd>
        </div>
        {j.priority !== 0 && (
          <div>
            <dt>priority</dt>
            <dd>{j.priority}</dd>
          </div>
        )}
        {j.scheduleName && (
          <div>
            <dt>schedule</dt>
            <dd data-testid="job-schedule">
              <Link to={`/schedules?name=${encodeURIComponent(j.scheduleName)}`}>{j.scheduleName}</Link>
              {j.labels["hodei.io/schedule-tick"] && <span className="muted small"> tick {j.labels["hodei.io/schedule-tick"]}</span>}
            </dd>
          </div>
        )}
        {j.traceId && (
          <div>
            <dt>trace id</dt>
            <dd>
              <code data-testid="job-trace" title="the job's trace in your tracing backend">
                {j.traceId}
              </code>
            </dd>
          </div>
        )}
        {j.rerunOf && (
          <div>
            <dt>rerun of</dt>
            <dd>
              <Link to={`/jobs/${j.rerunOf}`}>
                <ShortId id={j.rerunOf} />
              </Link>
            </dd>
          </div>
        )}
      </dl>
      {j.reason && <p className={`reason ${j.state}`}>{j.reason}</p>}
      <div className="command">
        <span className="muted small">{j.script ? "script" : "command"}</span>
        <pre data-testid="job-command">{j.script || commandOf(j)}</pre>
      </div>
      <Details job={j} />
      <h3>Timeline</h3>
      <Waterfall job={j} now={now} />
      {j.attemptHistory.length > 0 && (
        <table className="table attempts">
          <thead>
            <tr>
              <th>#</th>
              <th>worker</th>
              <th>provider_resource_id</th>
              <th>worker state</th>
              <th>exit</th>
              <th>provision → register → start → finish → destroy</th>
              <th>how it ended</th>
            </tr>
          </thead>
          <tbody>
            {j.attemptHistory.map((a) => {
              const t = a.timeline;
              const steps = [ms(t?.provisioned), ms(t?.registered), ms(t?.started), ms(t?.finished), ms(t?.destroyed)];
              const base = ms(t?.queued) ?? ms(j.createdAt);
              return (
                <tr key={a.number}>
                  <td>{a.number}</td>
                  <td className="mono small">{a.workerName}</td>
                  <td className="mono small ellipsis" title={a.providerResourceId}>
                    {a.providerResourceId || "—"} <span className="muted">{a.resourceType}</span>
                  </td>
                  <td>{a.workerState}</td>
                  <td>{a.exitCode ?? "—"}</td>
                  <td className="mono small">{steps.map((s) => (s === null || base === null ? "·" : `+${((s - base) / 1000).toFixed(2)}s`)).join("  ")}</td>
                  <td className="small">{a.reason || a.failureReason}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <Deliveries deliveries={j.deliveries} />
      <h3>
        Log
        {j.logsTruncated && <span className="warn small"> truncated at the server's limit</span>}
        {j.logsIncomplete && <span className="warn small"> incomplete: the worker ended before every line arrived</span>}
      </h3>
      <LogView jobId={j.id} isFinished={isFinished} onEnded={(ended) => client.setQueryData(["job", id], ended)} />
    </Page>
  );
}

function Details({ job }: { job: import("../../../src/gen/hodei/v1/api_pb.js").Job }) {
  const env = Object.entries(job.env);
  const labels = Object.entries(job.labels);
  const extras: [string, string][] = [];
  if (job.resources && (job.resources.cpuMillis || job.resources.memoryMb))
    extras.push(["resources", `${job.resources.cpuMillis ? `${job.resources.cpuMillis / 1000} cpu ` : ""}${job.resources.memoryMb ? `${job.resources.memoryMb} MiB` : ""}`]);
  if (job.resourcesApplied) extras.push(["applied", job.resourcesApplied]);
  if (job.retryOnExitCodes) extras.push(["retry on exit", job.retryOnExitCodes]);
  if (job.queueTimeoutSeconds) extras.push(["queue timeout", `${job.queueTimeoutSeconds} s`]);
  if (job.pullPolicy && job.pullPolicy !== "if-not-present") extras.push(["pull", job.pullPolicy]);
  if (job.secretNames.length) extras.push(["secrets", job.secretNames.join(", ")]);
  if (Object.keys(job.nodeSelector).length) extras.push(["node selector", Object.entries(job.nodeSelector).map(([k, v]) => `${k}=${v}`).join(", ")]);
  if (!env.length && !labels.length && !extras.length) return null;
  return (
    <dl className="facts small">
      {labels.length > 0 && (
        <div>
          <dt>labels</dt>
          <dd>
            {labels.map(([k, v]) => (
              <Link key={k} to={`/?label=${encodeURIComponent(`${k}=${v}`)}`} className="chip">
                {k}={v}
              </Link>
            ))}
          </dd>
        </div>
      )}
      {env.length > 0 && (
        <div>
          <dt>env</dt>
          <dd className="mono">{env.map(([k, v]) => (job.envRedacted ? k : `${k}=${v}`)).join("  ")}</dd>
        </div>
      )}
      {extras.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
