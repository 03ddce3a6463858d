/**
 * /metrics on a real server with the local provider and one worker at a time: the queue gauge
 * counts jobs waiting at capacity, and after they ran the queue wait, run time, worker phase,
 * provider call, log byte and reconcile counts have moved. Then the Grafana dashboard and the
 * Prometheus alert rules in deploy/: they parse, and every metric their expressions name is one
 * this server exports (so they cannot drift from the code). Ends by proving no worker process is left.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse } from "yaml";
import { familyNames, value } from "../fixtures/prometheus-text.js";
import { eventually, jobWhen, leftoverProcesses, ROOT, runCli, type ServerProcess, startServerProcess, stopLeavingNothing, waitDestroyed } from "./harness.js";

const DASHBOARD = resolve(ROOT, "deploy/grafana/hodei-dashboard.json");
const ALERTS = resolve(ROOT, "deploy/prometheus/hodei-alerts.yaml");

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}
interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string; description: string };
}

/** Metric names an expression reads, with a histogram's _bucket, _sum and _count mapped to its family. */
function metricNamesOf(expr: string): string[] {
  return [...expr.matchAll(/\bhodei_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ""));
}

describe("metrics of a running server (local provider, one worker at a time)", () => {
  let server: ServerProcess;
  let gates: string;

  before(async () => {
    server = await startServerProcess({ HODEI_LOCAL_MAX_WORKERS: "1" });
    gates = mkdtempSync(join(tmpdir(), "hodei-gates-"));
  });
  after(async () => {
    const left = await leftoverProcesses(server);
    rmSync(gates, { recursive: true, force: true });
    await stopLeavingNothing(server);
    assert.deepEqual(left, [], `worker processes left behind: ${JSON.stringify(left)}`);
  });

  async function scrape(): Promise<string> {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    return res.text();
  }

  async function detach(args: string[]): Promise<string> {
    const result = await runCli(server, ["run", "--detach", ...args]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.trim();
  }

  const local = { provider: "local" };
  const count = (text: string, name: string, labels: Record<string, string> = {}) => value(text, name, { ...local, ...labels }) ?? 0;

  it("counts waiting jobs in the queue gauge, then the queue wait, run time, phases, calls, log bytes and passes", async () => {
    const before = await scrape();
    const gate = join(gates, "open");
    const blocker = await detach(["--", `while [ ! -f '${gate}' ]; do sleep 0.05; done; echo blocker done`]);
    const running = await jobWhen(server, blocker, (j) => j.state === "running");
    assert.equal(running.state, "running", running.reason);
    const waiting = [await detach(["--", "echo", "hello metrics"]), await detach(["--priority", "7", "--", "echo", "hello metrics"])];

    // The one worker is taken: both wait, due, in the queue (the leader's count, read at the scrape).
    const during = await scrape();
    assert.equal(count(during, "hodei_queue_depth", { priority: "0" }), 1);
    assert.equal(count(during, "hodei_queue_depth", { priority: "7" }), 1);
    assert.equal(count(during, "hodei_queue_delayed"), 0);
    assert.equal(count(during, "hodei_workers", { state: "running" }), 1);
    assert.equal(count(during, "hodei_live_workers"), 1);
    assert.equal(value(during, "hodei_leader"), 1, "a single server leads");
    assert.equal(count(during, "hodei_provider_up"), 1);

    writeFileSync(gate, "");
    const done = [];
    for (const id of [blocker, ...waiting]) done.push(await waitDestroyed(server, id));
    for (const job of done) assert.equal(job.state, "succeeded", job.reason);

    // The destroy is recorded right after its row is written, which is what the CLI just read.
    const afterText = await eventually(async () => {
      const text = await scrape();
      return count(text, "hodei_worker_phase_seconds_count", { phase: "destroy" }) - count(before, "hodei_worker_phase_seconds_count", { phase: "destroy" }) >= 3 ? text : "";
    });
    assert.ok(afterText, "three destroys were timed");
    const moved = (name: string, labels: Record<string, string> = {}) => count(afterText, name, labels) - count(before, name, labels);
    assert.equal(value(afterText, "hodei_queue_depth", local), undefined, "no job waits any more");
    assert.equal(count(afterText, "hodei_workers", { state: "running" }), 0);
    assert.equal(moved("hodei_job_queue_wait_seconds_count"), 3);
    assert.ok(moved("hodei_job_queue_wait_seconds_sum") > 0, "the waiting jobs waited for the blocker");
    assert.equal(moved("hodei_job_run_seconds_count", { state: "succeeded" }), 3);
    for (const phase of ["provision", "register", "dispatch"]) assert.equal(moved("hodei_worker_phase_seconds_count", { phase }), 3, `phase ${phase}`);
    assert.equal(moved("hodei_provider_call_seconds_count", { call: "start" }), 3);
    assert.ok(moved("hodei_provider_call_seconds_count", { call: "stop" }) >= 3, "each worker was stopped");
    const output = Buffer.byteLength("hello metrics\n") * 2 + Buffer.byteLength("blocker done\n");
    assert.ok(moved("hodei_log_bytes_total") >= output, `log bytes counted (${moved("hodei_log_bytes_total")} >= ${output})`);
    assert.ok((value(afterText, "hodei_reconcile_pass_seconds_count") ?? 0) > (value(before, "hodei_reconcile_pass_seconds_count") ?? 0), "passes ran");
    assert.ok((value(afterText, "hodei_reconcile_step_seconds_count", { step: "provision" }) ?? 0) > 0);
    assert.equal(moved("hodei_jobs_finished_total", { state: "succeeded" }), 3);
  });

  it("the Grafana dashboard and the alert rules parse and name only metrics this server exports", async () => {
    const exported = familyNames(await scrape());
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { title: string; panels: Panel[] };
    const exprs = dashboard.panels.filter((p) => p.type !== "row").flatMap((p) => {
      assert.ok(p.targets && p.targets.length > 0, `panel "${p.title}" has a query`);
      return p.targets.map((t) => t.expr);
    });
    const rules = (parse(readFileSync(ALERTS, "utf8")) as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
    for (const rule of rules) {
      assert.match(rule.alert, /^Hodei[A-Za-z]+$/);
      assert.ok(["warning", "critical"].includes(rule.labels.severity), `${rule.alert} has a severity`);
      assert.ok(rule.annotations.summary && rule.annotations.description, `${rule.alert} says what happened and what to do`);
    }
    const named = new Set([...exprs, ...rules.map((r) => r.expr)].flatMap(metricNamesOf));
    // The questions the brief of these files asks: each must be answered by some expression.
    for (const needed of ["hodei_queue_depth", "hodei_job_queue_wait_seconds", "hodei_worker_phase_seconds", "hodei_provider_up", "hodei_orphans_detected_total", "hodei_reconcile_step_failures_total"]) {
      assert.ok(named.has(needed), `${needed} is used`);
    }
    const unknown = [...named].filter((name) => !exported.has(name));
    assert.deepEqual(unknown, [], "metrics named in deploy/ that /metrics does not export");
    for (const alert of ["HodeiOrphansFound", "HodeiProviderUnavailable", "HodeiQueueWaitHigh", "HodeiReconcileStepFailing"]) {
      assert.ok(rules.some((r) => r.alert === alert), `alert ${alert}`);
    }
  });
});
