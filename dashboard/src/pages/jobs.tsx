/**
 * The jobs list: newest first, polled every 2 s (the API has no list stream), filtered by state,
 * provider and label selector on the server, paged by the server's cursor. The search box (?q=,
 * sent on Enter or after a pause in typing) is ListJobs' query over all jobs: id prefixes through
 * the primary key, commands by a scan the server bounds per call. When the server stopped at its
 * bound, the page says so and "older" goes on searching. A full id opens the job directly.
 */
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { type FormEvent, useEffect, useState } from "react";
import { jobs } from "../api";
import { ago, commandOf, duration, JOB_STATES, ms } from "../format";
import { Link, navigate, useLocation } from "../router";
import { useCaller } from "../session";
import { type Column, VirtualTable } from "../virtual-table";
import { ErrorBox, Page, ShortId, StateBadge } from "../widgets";
import type { Job } from "../../../src/gen/hodei/v1/api_pb.js";

const POLL_MS = 2000;
/** The search is sent this long after the last keystroke, ms. */
const SEARCH_PAUSE_MS = 300;

export function JobsPage() {
  const { search } = useLocation();
  const { caller } = useCaller();
  const state = search.get("state") ?? "";
  const provider = search.get("provider") ?? "";
  const label = search.get("label") ?? "";
  const limit = Number(search.get("limit") ?? 100);
  const q = (search.get("q") ?? "").trim();
  const [cursors, setCursors] = useState<string[]>([""]);
  const [query, setQuery] = useState(q);
  const [lastQ, setLastQ] = useState(q);
  if (q !== lastQ) {
    // The URL's search changed (back, a link): the box shows it.
    setLastQ(q);
    if (query.trim() !== q) setQuery(q);
  }
  const pageToken = cursors[cursors.length - 1];
  const filterKey = `${state}|${provider}|${label}|${limit}|${q}`;
  const [lastFilterKey, setLastFilterKey] = useState(filterKey);
  if (filterKey !== lastFilterKey) {
    setLastFilterKey(filterKey);
    setCursors([""]);
  }

  const list = useQuery({
    queryKey: ["jobs", state, provider, label, limit, q, pageToken],
    queryFn: () => jobs.listJobs({ states: state ? [state] : [], provider, labelSelector: label, limit, pageToken, query: q }),
    refetchInterval: POLL_MS,
    placeholderData: keepPreviousData,
    enabled: caller.canRead,
  });
  const providers = useQuery({ queryKey: ["providers"], queryFn: () => jobs.listProviders({}), enabled: caller.canRead, staleTime: 30_000 });

  const setFilter = (name: string, value: string) => {
    const next = new URLSearchParams(search);
    if (value) next.set(name, value);
    else next.delete(name);
    const qs = next.toString();
    navigate(`/${qs ? `?${qs}` : ""}`);
  };

  const shown = list.data?.jobs ?? [];
  // Typing searches after a pause; Enter searches at once (and opens a full id).
  useEffect(() => {
    if (!caller.canRead || query.trim() === q) return;
    const timer = setTimeout(() => setFilter("q", query.trim()), SEARCH_PAUSE_MS);
    return () => clearTimeout(timer);
  });

  const onSearch = (e: FormEvent) => {
    e.preventDefault();
    const text = query.trim().toLowerCase();
    if (/^[0-9a-f-]{36}$/.test(text)) navigate(`/jobs/${text}`);
    else setFilter("q", query.trim());
  };

  if (!caller.canRead) {
    return (
      <Page title="Jobs">
        <p className="muted">This key has no "read" scope, so it cannot list jobs. Open a job it submitted by its id:</p>
        <form onSubmit={onSearch} className="toolbar">
          <input value={query} onChange={(e) => setQuery(e.target.value)} placeholder="job id" aria-label="job id" data-shortcut="search" />
        </form>
      </Page>
    );
  }

  const now = Date.now();
  const columns: Column<Job>[] = [
    { header: "id", width: "88px", cell: (j) => <Link to={`/jobs/${j.id}`}><ShortId id={j.id} /></Link> },
    { header: "state", width: "104px", cell: (j) => <StateBadge state={j.state} /> },
    { header: "command", width: "minmax(220px, 1fr)", className: "mono ellipsis", cell: (j) => <span title={commandOf(j)}>{commandOf(j)}</span> },
    { header: "provider", width: "88px", cell: (j) => j.provider },
    { header: "exit", width: "48px", className: "num", cell: (j) => (j.exitCode === undefined ? "" : j.exitCode) },
    { header: "attempts", width: "70px", className: "num", cell: (j) => `${j.attempts}/${j.maxAttempts}` },
    { header: "submitted by", width: "110px", className: "ellipsis", cell: (j) => j.submittedBy || "—" },
    { header: "created", width: "96px", cell: (j) => <span title={new Date(ms(j.createdAt) ?? 0).toISOString()}>{ago(ms(j.createdAt), now)}</span> },
    { header: "duration", width: "86px", className: "num", cell: (j) => duration(ms(j.timeline?.started), ms(j.finishedAt) ?? (j.state === "running" ? now : null)) },
    {
      header: "labels",
      width: "minmax(120px, 0.6fr)",
      className: "ellipsis",
      cell: (j) =>
        Object.entries(j.labels).map(([k, v]) => (
          <button key={k} type="button" className="chip" onClick={() => setFilter("label", `${k}=${v}`)} title="filter by this label">
            {k}={v}
          </button>
        )),
    },
  ];

  return (
    <Page
      title="Jobs"
      loaded={list.isSuccess}
      actions={caller.canSubmit && <Link to="/submit" className="button primary">New job</Link>}
    >
      <div className="toolbar">
        <form onSubmit={onSearch}>
          <input
            type="search"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            placeholder="search id or command  /"
            aria-label="search"
            data-shortcut="search"
          />
        </form>
        <select aria-label="state" value={state} onChange={(e) => setFilter("state", e.target.value)}>
          <option value="">all states</option>
          {JOB_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <select aria-label="provider" value={provider} onChange={(e) => setFilter("provider", e.target.value)}>
          <option value="">all providers</option>
          {providers.data?.providers.map((p) => (
            <option key={p.name} value={p.name}>
              {p.name}
            </option>
          ))}
        </select>
        <LabelFilter value={label} onChange={(v) => setFilter("label", v)} />
        <select aria-label="page size" value={limit} onChange={(e) => setFilter("limit", e.target.value === "100" ? "" : e.target.value)}>
          {[50, 100, 500].map((n) => (
            <option key={n} value={n}>
              {n} a page
            </option>
          ))}
        </select>
        <span className="spacer" />
        <span className="muted small">{list.isFetching ? "updating…" : `live · every ${POLL_MS / 1000} s`}</span>
        <button type="button" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))} aria-label="newer">
          ← newer
        </button>
        <span className="muted small">page {cursors.length}</span>
        <button type="button" disabled={!list.data?.nextPageToken} onClick={() => setCursors([...cursors, list.data!.nextPageToken])} aria-label="older">
          older →
        </button>
      </div>
      {list.error ? <ErrorBox error={list.error} /> : null}
      {q && list.data?.partial ? (
        <p className="muted small" data-testid="search-partial">
          searched {list.data.examined.toLocaleString()} jobs this page{shown.length ? "" : " without a match"}; older jobs may match: “older →” searches on
        </p>
      ) : null}
      <VirtualTable
        label="jobs"
        rows={shown}
        stale={list.isPlaceholderData}
        columns={columns}
        rowKey={(j) => j.id}
        rowProps={(j) => ({ "data-job-id": j.id, "data-state": j.state })}
        empty={list.isPending ? "loading…" : q ? (list.data?.partial ? "no match yet" : "no job matches") : "no jobs"}
      />
    </Page>
  );
}

function LabelFilter({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  const [text, setText] = useState(value);
  const [last, setLast] = useState(value);
  if (value !== last) {
    setLast(value);
    setText(value);
  }
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        onChange(text.trim());
      }}
    >
      <input value={text} onChange={(e) => setText(e.target.value)} placeholder="label k=v,k2=v2 ↵" aria-label="label selector" />
    </form>
  );
}
