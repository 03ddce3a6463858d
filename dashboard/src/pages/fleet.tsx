/**
 * Workers, OTP tokens and providers: what the CLI's `workers`, `tokens` and `providers` show, polled
 * every 2 s. The token table is the seed's: provider, provider_resource_id, consumed, type, job.
 * `hodei doctor` and `hodei verify` run probe jobs from the CLI; the API exposes no results of
 * theirs, so the providers page shows health, capacity, last error and orphans as the API gives them.
 */
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import type { OtpToken, Worker } from "../../../src/gen/hodei/v1/api_pb.js";
import { ChecksPanel } from "./checks";
import { jobs } from "../api";
import { ago, isoTime, ms } from "../format";
import { Link } from "../router";
import { type Column, VirtualTable } from "../virtual-table";
import { ErrorBox, Page, ShortId, StateBadge } from "../widgets";

const POLL_MS = 2000;

export function WorkersPage() {
  const [all, setAll] = useState(false);
  const list = useQuery({
    queryKey: ["workers", all],
    queryFn: () => jobs.listWorkers({ all, limit: all ? 1000 : 0 }),
    refetchInterval: POLL_MS,
    placeholderData: keepPreviousData,
  });
  const now = Date.now();
  const columns: Column<Worker>[] = [
    { header: "worker", width: "minmax(180px, 1fr)", className: "mono small ellipsis", cell: (w) => <span title={w.id}>{w.name}</span> },
    { header: "state", width: "100px", cell: (w) => <StateBadge state={w.state} /> },
    { header: "provider", width: "88px", cell: (w) => w.provider },
    { header: "provider_resource_id", width: "minmax(160px, 1fr)", className: "mono small ellipsis", cell: (w) => <span title={w.providerResourceId}>{w.providerResourceId || "—"}</span> },
    { header: "type", width: "100px", className: "small", cell: (w) => w.resourceType },
    { header: "job", width: "90px", cell: (w) => <Link to={`/jobs/${w.jobId}`}><ShortId id={w.jobId} /></Link> },
    { header: "attempt", width: "64px", className: "num", cell: (w) => w.attempt },
    { header: "created", width: "90px", cell: (w) => ago(ms(w.createdAt), now) },
    { header: "heartbeat", width: "90px", cell: (w) => ago(ms(w.lastHeartbeatAt), now) },
    { header: "last error", width: "minmax(120px, 1fr)", className: "small ellipsis error-text", cell: (w) => <span title={w.lastError}>{w.lastError}</span> },
  ];
  return (
    <Page
      title="Workers"
      loaded={list.isSuccess}
      actions={
        <label className="check">
          <input type="checkbox" checked={all} onChange={(e) => setAll(e.target.checked)} /> destroyed too
        </label>
      }
    >
      {list.error ? <ErrorBox error={list.error} /> : null}
      <VirtualTable label="workers" rows={list.data?.workers ?? []} columns={columns} rowKey={(w) => w.id} rowProps={(w) => ({ "data-worker-id": w.id })} empty={list.isPending ? "loading…" : all ? "no workers" : "no live workers"} />
    </Page>
  );
}

export function TokensPage() {
  const list = useQuery({ queryKey: ["tokens"], queryFn: () => jobs.listTokens({ limit: 500 }), refetchInterval: POLL_MS, placeholderData: keepPreviousData });
  const columns: Column<OtpToken>[] = [
    { header: "provider", width: "90px", cell: (t) => t.provider },
    { header: "provider_resource_id", width: "minmax(200px, 1.4fr)", className: "mono small ellipsis", cell: (t) => <span title={t.providerResourceId} data-testid="token-resource">{t.providerResourceId || "—"}</span> },
    {
      header: "consumed",
      width: "150px",
      cell: (t) => (
        <span data-testid="token-consumed" className={t.consumed ? "ok" : t.expired ? "muted" : ""} title={isoTime(ms(t.consumedAt))}>
          {t.consumed ? `yes · ${ago(ms(t.consumedAt))}` : t.expired ? "no · expired" : "no"}
        </span>
      ),
    },
    { header: "type", width: "110px", className: "small", cell: (t) => t.resourceType },
    { header: "job", width: "90px", cell: (t) => <Link to={`/jobs/${t.jobId}`}><ShortId id={t.jobId} /></Link> },
    { header: "attempt", width: "64px", className: "num", cell: (t) => t.attempt },
    { header: "created", width: "100px", cell: (t) => ago(ms(t.createdAt)) },
    { header: "expires", width: "100px", cell: (t) => ago(ms(t.expiresAt)) },
  ];
  return (
    <Page title="OTP tokens" loaded={list.isSuccess} actions={<span className="muted small">newest 500 · the secrets are never stored, only their hashes</span>}>
      {list.error ? <ErrorBox error={list.error} /> : null}
      <VirtualTable label="tokens" rows={list.data?.tokens ?? []} columns={columns} rowKey={(t) => t.id} rowProps={(t) => ({ "data-job-id": t.jobId, "data-consumed": String(t.consumed) })} empty={list.isPending ? "loading…" : "no tokens"} />
    </Page>
  );
}

export function ProvidersPage() {
  const list = useQuery({ queryKey: ["providers"], queryFn: () => jobs.listProviders({}), refetchInterval: POLL_MS });
  return (
    <Page title="Providers" loaded={list.isSuccess}>
      {list.error ? <ErrorBox error={list.error} /> : null}
      <div className="cards">
        {list.data?.providers.map((p) => (
          <article key={p.name} className={`card ${p.healthy ? "" : "sick"}`} data-provider={p.name}>
            <header>
              <h3>
                {p.name} {p.isDefault && <span className="chip">default</span>}
              </h3>
              <span className={`badge ${p.healthy ? "state-succeeded" : "state-failed"}`}>{p.healthy ? "healthy" : "unavailable"}</span>
            </header>
            <div className="meter" title={`${p.activeWorkers} of ${p.maxWorkers} workers busy`}>
              <span style={{ width: `${p.maxWorkers ? Math.min(100, (p.activeWorkers / p.maxWorkers) * 100) : 0}%` }} />
            </div>
            <dl className="facts small">
              <div>
                <dt>capacity</dt>
                <dd>
                  {p.activeWorkers} of {p.maxWorkers} workers busy
                </dd>
              </div>
              <div>
                <dt>orphans</dt>
                <dd>{p.orphansError ? <span className="warn" title={p.orphansError}>unknown: {p.orphansError}</span> : p.orphans}</dd>
              </div>
              <div>
                <dt>workers reach</dt>
                <dd className="mono">{p.workerServerUrl}</dd>
              </div>
              {p.detail && (
                <div>
                  <dt>{p.healthy ? "detail" : "last error"}</dt>
                  <dd className={p.healthy ? "" : "error-text"}>{p.detail}</dd>
                </div>
              )}
              {p.workerServerUrlWarning && (
                <div>
                  <dt>warning</dt>
                  <dd className="warn">{p.workerServerUrlWarning}</dd>
                </div>
              )}
            </dl>
          </article>
        ))}
      </div>
      {list.data && <ChecksPanel providers={list.data.providers} />}
    </Page>
  );
}
