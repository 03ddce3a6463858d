/**
 * The attempts of a job as a waterfall on one time axis (from the job's submission to the last
 * moment known, or now while it runs): per attempt, its phases queued → provisioned → registered →
 * started → finished → destroyed as bars, each with its duration.
 */
import type { Attempt, Job } from "../../../src/gen/hodei/v1/api_pb.js";
import { formatMs, ms } from "../format";

const PHASES = [
  { from: "queued", to: "provisioned", label: "queued", className: "ph-queued" },
  { from: "provisioned", to: "registered", label: "starting worker", className: "ph-provision" },
  { from: "registered", to: "started", label: "registered", className: "ph-register" },
  { from: "started", to: "finished", label: "running", className: "ph-run" },
  { from: "finished", to: "destroyed", label: "destroying", className: "ph-destroy" },
] as const;

type Point = (typeof PHASES)[number]["from"] | "destroyed";

function pointsOf(attempt: Attempt, job: Job): Record<Point, number | null> {
  const t = attempt.timeline;
  return {
    queued: ms(t?.queued) ?? ms(job.createdAt),
    provisioned: ms(t?.provisioned),
    registered: ms(t?.registered),
    started: ms(t?.started),
    finished: ms(t?.finished),
    destroyed: ms(t?.destroyed),
  };
}

export function Waterfall({ job, now }: { job: Job; now: number }) {
  const attempts = job.attemptHistory;
  const origin = ms(job.createdAt) ?? now;
  const rows = attempts.map((a) => ({ attempt: a, points: pointsOf(a, job) }));
  let end = origin + 1;
  for (const { points } of rows) for (const v of Object.values(points)) if (v !== null && v > end) end = v;
  if (ms(job.finishedAt) === null) end = Math.max(end, now);
  const span = end - origin;
  const pct = (t: number) => `${(((t - origin) / span) * 100).toFixed(3)}%`;

  if (rows.length === 0) {
    return <p className="muted">No attempt yet: the job is {job.state.replace("_", " ")} since {formatMs(now - origin)}.</p>;
  }
  return (
    <div className="waterfall" role="table" aria-label="attempts">
      <div className="wf-axis" role="row">
        <span />
        <span className="wf-scale">
          <span>0</span>
          <span>{formatMs(span / 2)}</span>
          <span>{formatMs(span)}</span>
        </span>
      </div>
      {rows.map(({ attempt, points }) => (
        <div className="wf-row" role="row" key={attempt.number} data-attempt={attempt.number}>
          <span className="wf-label">
            #{attempt.number} <span className="muted">{attempt.provider}</span>
          </span>
          <span className="wf-track">
            {PHASES.map((p) => {
              const from = points[p.from];
              if (from === null) return null;
              const next = points[p.to];
              const isOpen = next === null;
              // An open phase runs to now while the job is live; a phase never closed in an ended attempt is not drawn past its start.
              const to = next ?? (ms(job.finishedAt) === null ? now : from);
              if (to <= from && !isOpen) return null;
              const d = to - from;
              return (
                <span
                  key={p.from}
                  className={`wf-bar ${p.className}${isOpen ? " open" : ""}`}
                  style={{ left: pct(from), width: `max(2px, ${(((to - from) / span) * 100).toFixed(3)}%)` }}
                  title={`${p.label}: ${formatMs(d)}${isOpen ? " (so far)" : ""}`}
                >
                  <span className="wf-text">
                    {p.label} {formatMs(d)}
                  </span>
                </span>
              );
            })}
          </span>
        </div>
      ))}
      <div className="wf-legend">
        {PHASES.map((p) => (
          <span key={p.from}>
            <i className={`wf-swatch ${p.className}`} /> {p.label}
          </span>
        ))}
      </div>
    </div>
  );
}
