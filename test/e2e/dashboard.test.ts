/**
 * The web dashboard in real headless Chromium against a real `hodei server` (auth on, local
 * provider): the routes it answers beside the API's, sign-in, what a read-only key is shown, a job
 * submitted from the form whose log lines appear while it runs, search by id prefix and command,
 * doctor and verify run from the Providers page, ANSI colours in a log,
 * cancel and rerun from a job's page, a job's end shown from its log stream alone, and the tokens page. Every test proves no worker process is left; the browser is closed at the end.
 * HODEI_SCREENSHOTS=1 also saves each page to docs/screenshots/.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, BrowserContext, Page, Route } from "playwright-core";
import { JobService, KeyService } from "../../src/gen/hodei/v1/api_pb.js";
import { browserMissing, launchBrowser, signIn } from "./browser.js";
import {
  eventually,
  jobWhen,
  leftoverProcesses,
  ROOT,
  type ServerProcess,
  sendKey,
  startServerProcess,
  stopLeavingNothing,
  type TokenJson,
  jsonCli,
  waitDestroyed,
} from "./harness.js";

const skip = browserMissing();
const SCREENSHOTS = process.env.HODEI_SCREENSHOTS === "1" ? join(ROOT, "docs", "screenshots") : "";

describe("the web dashboard", { skip: skip || undefined }, () => {
  let server: ServerProcess;
  let browser: Browser;
  let context: BrowserContext;
  let api: ReturnType<typeof createClient<typeof JobService>>;
  let submittedId = "";

  before(async () => {
    server = await startServerProcess();
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] });
    api = createClient(JobService, transport);
    browser = await launchBrowser();
    if (SCREENSHOTS) mkdirSync(SCREENSHOTS, { recursive: true });
  });
  afterEach(async () => {
    await context?.close();
    const left = await leftoverProcesses(server);
    assert.deepEqual(left, [], `worker processes left behind: ${JSON.stringify(left)}`);
  });
  after(async () => {
    await browser?.close();
    await stopLeavingNothing(server);
  });

  async function newPage(): Promise<Page> {
    context = await browser.newContext({ viewport: { width: 1400, height: 900 }, colorScheme: "light" });
    const page = await context.newPage();
    page.on("pageerror", (err) => console.log(`page error: ${err.message}`));
    return page;
  }

  async function shoot(page: Page, name: string) {
    if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
  }

  it("answers / and its client-side routes with the app, and keeps every other route's answer", async () => {
    for (const path of ["/", "/jobs/0b7e6c1a-1f2e-4c3d-9a8b-7c6d5e4f3a2b", "/workers", "/tokens", "/providers", "/schedules", "/submit"]) {
      const res = await fetch(server.url + path);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
      assert.match(await res.text(), /<div id="root">/);
    }
    assert.equal(await (await fetch(`${server.url}/healthz`)).text(), "ok\n");
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    assert.match(await (await fetch(`${server.url}/metrics`)).text(), /# HELP/);
    const unknown = await fetch(`${server.url}/nope`);
    assert.equal(unknown.status, 404);
    assert.match(await unknown.text(), /no route \/nope/);
    const rpc = await fetch(`${server.url}/hodei.v1.JobService/ListJobs`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(rpc.status, 401, "the API still asks for a key");
    for (const path of ["/../package.json", "/%2e%2e/package.json", "/..%2fpackage.json", "/assets/..%2f..%2f..%2fpackage.json", "/%2e%2e%2f%2e%2e%2fpackage.json"]) {
      const res = await rawGet(server.port, path);
      assert.notEqual(res.status, 200, path);
      assert.doesNotMatch(res.body, /"name": "hodei"/, path);
    }
  });

  it("shows any page a one-field sign-in form first, and Enter signs in on the page asked for", async () => {
    const page = await newPage();
    await page.goto(`${server.url}/tokens`);
    const field = page.locator('input[type="password"]');
    await field.waitFor();
    assert.equal(await page.locator("form input").count(), 1, "one field");
    await shoot(page, "sign-in");
    await field.fill(`hodei_key_${"A".repeat(43)}`);
    await field.press("Enter");
    await page.getByRole("alert").filter({ hasText: "refused" }).waitFor();
    await signIn(page, server.adminKey);
    assert.equal(new URL(page.url()).pathname, "/tokens", "stays on the page asked for");
    await page.getByRole("heading", { name: "OTP tokens" }).waitFor();
    assert.equal(await page.evaluate(`sessionStorage.getItem("hodei.apiKey")`), server.adminKey, "kept in session storage");
    await page.reload();
    await page.getByRole("heading", { name: "OTP tokens" }).waitFor();
  });

  it("shows a read-only key no button that would fail", async () => {
    const keys = createClient(KeyService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [sendKey(server)] }));
    const { key } = await keys.createKey({ name: "viewer", scopes: ["read"] });
    const running = await api.submitJob({ command: ["sleep 30"] });
    const done = await api.submitJob({ command: ["true"] });
    await waitDestroyed(server, done.job!.id);
    await jobWhen(server, running.job!.id, (j) => j.state === "running");
    const page = await newPage();
    await page.goto(`${server.url}/jobs/${running.job!.id}`);
    await signIn(page, key);
    await page.getByTestId("job-state").filter({ hasText: "running" }).waitFor();
    assert.match(await page.getByTestId("who").innerText(), /viewer · read/);
    assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 0);
    await page.goto(`${server.url}/jobs/${done.job!.id}`);
    await page.getByTestId("job-state").filter({ hasText: "succeeded" }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Rerun" }).count(), 0);
    await page.goto(`${server.url}/`);
    await page.locator(`[data-job-id="${done.job!.id}"]`).waitFor();
    assert.equal(await page.getByRole("link", { name: "New job" }).count(), 0);
    assert.equal(await page.getByRole("link", { name: "Submit" }).count(), 0);
    await api.cancelJob({ id: running.job!.id });
    await waitDestroyed(server, running.job!.id);
  });

  it("submits a job from the form and shows its log lines while it runs, within a second of being printed", async () => {
    const page = await newPage();
    await page.goto(`${server.url}/submit`);
    await signIn(page, server.adminKey);
    // Each line carries the time it was printed (ms); the page notes when it first shows each one.
    await page.fill('input[name="command"]', 'for i in $(seq 1 12); do echo "tick $i $(date +%s%3N)"; printf "\\033[33mwarn %s\\033[0m\\n" $i >&2; sleep 0.25; done');
    await page.fill('input[name="labels"]', "suite=dashboard");
    await page.getByRole("button", { name: "Submit" }).click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    submittedId = new URL(page.url()).pathname.split("/")[2];
    // A string, not a function: the test runner's transform would add helpers the page lacks.
    await page.evaluate(`(() => {
      const seen = {};
      window.seen = seen;
      const look = () => {
        for (const el of document.querySelectorAll(".line .tx")) {
          const m = /^tick (\\d+) (\\d+)$/.exec(el.textContent || "");
          if (m && !(m[1] in seen)) seen[m[1]] = Date.now() - Number(m[2]);
        }
        requestAnimationFrame(look);
      };
      look();
    })()`);
    await page.getByTestId("job-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 30_000 });
    await page.getByTestId("log-count").filter({ hasText: "complete" }).waitFor();
    const lags = (await page.evaluate("window.seen")) as Record<string, number>;
    const values = Object.values(lags).sort((a, b) => a - b);
    console.log(`log line lag (printed → shown in the page), ms, ${values.length} lines seen live: p50 ${values[Math.floor(values.length / 2)]} max ${values.at(-1)} all ${JSON.stringify(lags)}`);
    assert.ok(values.length >= 8, `most lines were seen while the job ran: ${JSON.stringify(lags)}`);
    assert.ok(values.at(-1)! < 5000, "a generous bound; the figures above are the measure");
    assert.equal(await page.locator(".line.err").count(), 12, "stderr lines are marked");
    assert.ok(await page.locator(".line.err .ansi-yellow-fg").count() > 0, "ANSI colours are drawn");
    assert.equal(await page.getByTestId("job-exit").innerText(), "0");
    await page.locator('[data-attempt="1"] .wf-bar').first().waitFor();
    const job = await api.getJob({ id: submittedId });
    assert.deepEqual(job.labels, { suite: "dashboard" });
    assert.equal(job.submittedBy, "admin");
    await waitDestroyed(server, submittedId);
    await page.waitForTimeout(1200);
    await shoot(page, "job");
  });

  it("searches all jobs by id prefix and by command from the search box", async () => {
    const { job: wanted } = await api.submitJob({ command: ["echo", "Search-Target-42"] });
    const { job: other } = await api.submitJob({ command: ["echo", "something else"] });
    await waitDestroyed(server, wanted!.id);
    await waitDestroyed(server, other!.id);
    const page = await newPage();
    await page.goto(`${server.url}/`);
    await signIn(page, server.adminKey);
    const search = page.getByRole("searchbox", { name: "search" });
    // While the next query loads, the table still shows the previous rows, marked aria-busy.
    const shownIds = async () => {
      await page.locator('[role="table"][aria-label="jobs"][aria-busy="false"]').waitFor();
      return page.locator("[data-job-id]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")));
    };
    await search.fill("search-target");
    await page.waitForURL((url) => url.searchParams.get("q") === "search-target", { timeout: 5000 });
    // The list follows the URL a render later: poll it to the expected rows, then assert (so a
    // wrong filter still fails, with the rows it showed).
    const settledIds = async (expected: string[]) => {
      let ids: (string | null)[] = [];
      await eventually(async () => {
        ids = await shownIds();
        return JSON.stringify(ids) === JSON.stringify(expected);
      }, 5000);
      return ids;
    };
    assert.deepEqual(await settledIds([wanted!.id]), [wanted!.id], "only the job whose command matches, case-insensitive");
    await search.fill(other!.id.slice(0, 8));
    await search.press("Enter");
    assert.deepEqual(await settledIds([other!.id]), [other!.id], "the job whose id starts with it");
    await search.fill(wanted!.id);
    await search.press("Enter");
    await page.waitForURL(`**/jobs/${wanted!.id}`);
  });

  it("runs doctor and verify from the Providers page and shows their results", async () => {
    const page = await newPage();
    await page.goto(`${server.url}/providers`);
    await signIn(page, server.adminKey);
    await page.getByRole("button", { name: "Run doctor" }).click();
    const doctor = page.getByTestId("doctor-report");
    await doctor.waitFor({ timeout: 90_000 });
    assert.equal(await doctor.getAttribute("data-ok"), "true", await doctor.innerText());
    const local = doctor.locator('[data-doctor-provider="local"]');
    assert.equal(await local.getAttribute("data-ok"), "true");
    assert.match(await local.innerText(), /probe worker registered and exited/);
    console.log(`doctor in the browser: ${(await local.innerText()).split("\n")[0]}`);
    await page.getByRole("button", { name: "Run verify" }).click();
    const verify = page.getByTestId("verify-report");
    await verify.waitFor({ timeout: 150_000 });
    console.log(`verify in the browser: ${(await verify.locator("h3").innerText()).trim()}`);
    assert.equal(await verify.getAttribute("data-ok"), "true", await verify.innerText());
    assert.equal(await verify.locator('[data-check][data-ok="true"]').count(), await verify.locator("[data-check]").count());
    assert.match(await verify.innerText(), /Data Processing printed 40951/);
    await shoot(page, "providers-checks");
  });

  it("colours a log by its ANSI codes: 16, 256 and truecolor, a colour carried across lines", async () => {
    const script = String.raw`printf '\033[31mred\nstill red\033[0m plain\n\033[38;5;208morange\033[0m \033[48;2;10;20;30mnavy\033[0m\n'`;
    const { job } = await api.submitJob({ command: [script] });
    await waitDestroyed(server, job!.id);
    const page = await newPage();
    await page.goto(`${server.url}/jobs/${job!.id}`);
    await signIn(page, server.adminKey);
    await page.getByTestId("log-count").filter({ hasText: "complete" }).waitFor();
    const colour = (text: string, property: "color" | "backgroundColor") =>
      page.locator(".line .tx span", { hasText: new RegExp(`^${text}$`) }).first().evaluate((el, p) => (globalThis as unknown as { getComputedStyle(e: unknown): Record<string, string> }).getComputedStyle(el)[p], property);
    assert.equal(await colour("red", "color"), "rgb(224, 49, 49)", "the themed red");
    assert.equal(await colour("still red", "color"), "rgb(224, 49, 49)", "carried to the next line");
    assert.equal(await colour("orange", "color"), "rgb(255, 135, 0)", "256-colour 208");
    assert.equal(await colour("navy", "backgroundColor"), "rgb(10, 20, 30)", "truecolor background");
    const plain = await page.locator(".line .tx", { hasText: "plain" }).innerText();
    assert.equal(plain, "still red plain", "no escape shown");
  });

  it("cancels a running job from its page, and reruns it", async () => {
    const { job } = await api.submitJob({ command: ["echo started; sleep 600"], labels: { suite: "dashboard" } });
    const page = await newPage();
    await page.goto(`${server.url}/jobs/${job!.id}`);
    await signIn(page, server.adminKey);
    await page.locator(".line .tx", { hasText: "started" }).waitFor({ timeout: 20_000 });
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.getByTestId("job-state").filter({ hasText: "canceled" }).waitFor({ timeout: 20_000 });
    const canceled = await waitDestroyed(server, job!.id);
    assert.equal(canceled.state, "canceled");
    await page.getByRole("button", { name: "Rerun" }).click();
    await page.waitForURL((url) => url.pathname.startsWith("/jobs/") && !url.pathname.endsWith(job!.id));
    const rerunId = new URL(page.url()).pathname.split("/")[2];
    const rerun = await api.getJob({ id: rerunId });
    assert.equal(rerun.rerunOf, job!.id);
    await api.cancelJob({ id: rerunId });
    await waitDestroyed(server, rerunId);
  });

  it("shows a job's end from its log stream's last entry, even while reading the job hangs", async () => {
    const go = join(tmpdir(), `hodei-dashboard-go-${process.pid}-${Date.now()}`);
    const { job } = await api.submitJob({ command: [`echo waiting; while [ ! -e ${go} ]; do sleep 0.05; done; echo done; exit 3`], labels: { suite: "dashboard" } });
    const page = await newPage();
    await page.goto(`${server.url}/jobs/${job!.id}`);
    await signIn(page, server.adminKey);
    await page.getByTestId("job-state").filter({ hasText: "running" }).waitFor({ timeout: 20_000 });
    await page.locator(".line .tx", { hasText: "waiting" }).waitFor({ timeout: 20_000 });
    // From here on the page's reads of the job never get an answer (held until the end of the test):
    // only the log can tell it the end.
    const held: Route[] = [];
    await page.route("**/hodei.v1.JobService/GetJob", (route) => void held.push(route));
    try {
      writeFileSync(go, "");
      await page.getByTestId("job-state").filter({ hasText: "failed" }).waitFor({ timeout: 20_000 });
      assert.equal(await page.getByTestId("job-exit").innerText(), "3");
      await page.locator(".line .tx", { hasText: "done" }).waitFor();
    } finally {
      await page.unroute("**/hodei.v1.JobService/GetJob");
      for (const route of held) await route.abort().catch(() => {});
      rmSync(go, { force: true });
    }
    await waitDestroyed(server, job!.id);
  });

  it("shows Rerun disabled, saying why, for a job whose secrets were deleted when it ended", async () => {
    const { job } = await api.submitJob({ command: ["true"], secrets: { DEPLOY_TOKEN: "s3cr3t-value" } });
    assert.equal((await waitDestroyed(server, job!.id)).state, "succeeded");
    const page = await newPage();
    await page.goto(`${server.url}/jobs/${job!.id}`);
    await signIn(page, server.adminKey);
    await page.getByTestId("job-state").filter({ hasText: "succeeded" }).waitFor();
    const rerun = page.getByRole("button", { name: "Rerun" });
    assert.equal(await rerun.isDisabled(), true);
    assert.equal(await rerun.getAttribute("title"), "Its secrets (DEPLOY_TOKEN) were deleted when it ended: submit it again with them");
    assert.doesNotMatch(await page.content(), /s3cr3t-value/);
  });

  it("lists the job's OTP token as consumed, with its provider_resource_id", async () => {
    assert.ok(submittedId, "the submit test ran first");
    const [token] = (await jsonCli<TokenJson[]>(server, ["tokens"])).filter((t) => t.jobId === submittedId);
    assert.ok(token?.consumed && token.providerResourceId, JSON.stringify(token));
    const page = await newPage();
    await page.goto(`${server.url}/tokens`);
    await signIn(page, server.adminKey);
    const row = page.locator(`[data-job-id="${submittedId}"]`);
    await row.waitFor();
    assert.equal(await row.getAttribute("data-consumed"), "true");
    assert.equal(await row.getByTestId("token-resource").innerText(), token.providerResourceId);
    assert.match(await row.getByTestId("token-consumed").innerText(), /^yes/);
    assert.match(await row.innerText(), /local/);
    assert.match(await row.innerText(), /process_id/);
    await shoot(page, "tokens");
    if (SCREENSHOTS) {
      for (const [path, name] of [["/", "jobs"], ["/workers", "workers"], ["/providers", "providers"], ["/submit", "submit"]]) {
        await page.goto(server.url + path);
        await page.locator("[data-loaded=true]").waitFor();
        await page.waitForTimeout(300);
        await shoot(page, name);
      }
      await page.goto(`${server.url}/jobs/${submittedId}`);
      await page.getByTestId("log-count").filter({ hasText: "complete" }).waitFor();
      await page.keyboard.press("d");
      await page.locator("html[data-theme=dark]").waitFor();
      await shoot(page, "job-dark");
    }
  });
});

/** GET with the path sent exactly as written (fetch would resolve ".." first). */
async function rawGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const http = await import("node:http");
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });
}
