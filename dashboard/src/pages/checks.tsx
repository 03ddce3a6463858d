/**
 * "Run doctor" and "Run verify" on the Providers page: the CLI's own checks (src/checks/, over this
 * page's API client), run from the browser for a key that may submit, and their results shown.
 * Doctor submits one probe job per healthy provider; verify three jobs per provider (and reads the
 * tokens and workers, so it needs "read" too). Nothing is stored: the results live in this page.
 */
import { useMutation } from "@tanstack/react-query";
import { runDoctor } from "../../../src/checks/doctor.js";
import { runVerify } from "../../../src/checks/verify.js";
import type { Provider } from "../../../src/gen/hodei/v1/api_pb.js";
import { jobs } from "../api";
import { formatMs } from "../format";
import { Link } from "../router";
import { useCaller } from "../session";
import { ErrorBox, ShortId, StateBadge } from "../widgets";

/** Each probe worker gets this long to run and be destroyed (the CLI's default), seconds. */
const DOCTOR_TIMEOUT_SECONDS = 60;
/** Verify's jobs get this long in all (the CLI's default), seconds. */
const VERIFY_TIMEOUT_SECONDS = 120;

export function ChecksPanel({ providers }: { providers: Provider[] }) {
  const { caller } = useCaller();
  const doctor = useMutation({ mutationFn: () => runDoctor(jobs, providers, DOCTOR_TIMEOUT_SECONDS) });
  const verify = useMutation({ mutationFn: () => runVerify(jobs, providers.map((p) => p.name), { timeoutSeconds: VERIFY_TIMEOUT_SECONDS }) });
  if (!caller.canSubmit) {
    return <p className="muted small">Doctor and verify submit probe jobs: this key has no "submit" scope.</p>;
  }
  const busy = doctor.isPending || verify.isPending;
  return (
    <section className="checks">
      <div className="toolbar">
        <button type="button" disabled={busy || providers.length === 0} onClick={() => doctor.mutate()}>
          {doctor.isPending ? "doctor running…" : "Run doctor"}
        </button>
        {caller.canRead && (
          <button type="button" disabled={busy || providers.length === 0} onClick={() => verify.mutate()}>
            {verify.isPending ? "verify running…" : "Run verify"}
          </button>
        )}
        <span className="muted small">
          doctor: a probe worker (<code>true</code>) on each provider; verify: three jobs on each, then jobs, tokens and cleanup checked (as <code>hodei doctor</code> and <code>hodei verify</code>)
        </span>
      </div>
      {doctor.error ? <ErrorBox error={doctor.error} /> : null}
      {doctor.data && (
        <div className="check-report" data-testid="doctor-report" data-ok={String(doctor.data.ok)}>
          <h3>doctor: {doctor.data.ok ? "all providers ok" : `${doctor.data.providers.filter((r) => !r.apiOk || !r.probe.ok).length} failing`}</h3>
          <ul className="checks-list">
            {doctor.data.providers.map((r) => (
              <li key={r.name} data-doctor-provider={r.name} data-ok={String(r.apiOk && r.probe.ok)}>
                <span className={r.apiOk && r.probe.ok ? "ok-mark" : "fail-mark"}>{r.apiOk && r.probe.ok ? "✓" : "✗"}</span> <strong>{r.name}</strong>{" "}
                {!r.apiOk
                  ? `api unhealthy: ${r.detail}`
                  : r.probe.ok
                    ? `api ok · probe worker registered and exited (${r.probe.durationMs === null ? "?" : formatMs(r.probe.durationMs)})`
                    : `api ok · probe failed: ${r.probe.reason}`}
                {r.probe.jobId && (
                  <>
                    {" "}
                    · <Link to={`/jobs/${r.probe.jobId}`}><ShortId id={r.probe.jobId} /></Link>
                  </>
                )}
                <div className="muted small">workers reach the server at {r.workerServerUrl || "(unknown)"}</div>
                {r.warning && <div className="warn small">warning: {r.warning}</div>}
                {r.fix && <div className="small">fix: {r.fix}</div>}
              </li>
            ))}
          </ul>
        </div>
      )}
      {verify.error ? <ErrorBox error={verify.error} /> : null}
      {verify.data && (
        <div className="check-report" data-testid="verify-report" data-ok={String(verify.data.ok)}>
          <h3>verify {verify.data.runId}: {verify.data.verdict}</h3>
          <table className="plain small">
            <thead>
              <tr>
                <th>job</th>
                <th>provider</th>
                <th>type</th>
                <th>state</th>
                <th>duration</th>
                <th>token resource</th>
                <th>consumed</th>
              </tr>
            </thead>
            <tbody>
              {verify.data.jobs.map((j) => {
                const token = verify.data.tokens.find((t) => t.jobId === j.id);
                return (
                  <tr key={j.id}>
                    <td><Link to={`/jobs/${j.id}`}><ShortId id={j.id} /></Link></td>
                    <td>{j.provider}</td>
                    <td>{j.type}</td>
                    <td><StateBadge state={j.state} /></td>
                    <td className="num">{j.durationMs === null ? "—" : formatMs(j.durationMs)}</td>
                    <td className="mono">{token?.providerResourceId || "—"} <span className="muted">{token?.resourceType}</span></td>
                    <td>{token ? (token.consumed ? "yes" : "no") : "—"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <ul className="checks-list">
            {verify.data.checks.map((c) => (
              <li key={c.name} data-check={c.name} data-ok={String(c.ok)}>
                <span className={c.ok ? "ok-mark" : "fail-mark"}>{c.ok ? "✓" : "✗"}</span> {c.name} <span className="muted small">{c.detail}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </section>
  );
}
