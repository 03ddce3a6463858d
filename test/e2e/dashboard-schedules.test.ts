/**
 * The dashboard's Schedules page and what a job's page shows of schedules, traces and webhooks, in
 * real headless Chromium against a real `hodei server` (auth on, local provider, webhooks allowed to
 * a receiver on 127.0.0.1): schedules created through the API are listed with their values and
 * paged; pause, resume and remove (through its confirmation) from the buttons reach the API; the
 * buttons are enabled only for a key that may use them; a job fired by a schedule links to it and
 * shows its webhook delivery; a job submitted with a traceparent shows its trace id. Every test
 * proves no worker process is left; the browser is closed at the end.
 * HODEI_SCREENSHOTS=1 also saves the Schedules page and such a job's page to docs/screenshots/.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { JobService, KeyService, ScheduleService } from "../../src/gen/hodei/v1/api_pb.js";
import { browserMissing, launchBrowser, signIn } from "./browser.js";
import { eventually, leftoverProcesses, ROOT, type ServerProcess, sendKey, startServerProcess, stopLeavingNothing, waitDestroyed } from "./harness.js";

const skip = browserMissing();
const SCREENSHOTS = process.env.HODEI_SCREENSHOTS === "1" ? join(ROOT, "docs", "screenshots") : "";

/** Answers /hook 204 and /fail 500, counting the requests by path. */
function startReceiver(): Promise<{ url: (path: string) => string; requests: string[]; stop: () => Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      requests.push(req.url ?? "");
      res.writeHead(req.url?.startsWith("/fail") ? 500 : 204).end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: (path) => `http://127.0.0.1:${port}${path}`,
        requests,
        stop: () => {
          server.closeAllConnections();
          return new Promise((done) => server.close(() => done()));
        },
      });
    }),
  );
}

/** The dashboard's way of showing a time (format.ts isoTime). */
const isoTime = (t: { seconds: bigint; nanos: number } | undefined) =>
  t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString().replace("T", " ").replace("Z", " UTC") : "";

const withKey =
  (key: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };

describe("the dashboard's schedules, traces and webhooks", { skip: skip || undefined }, () => {
  let server: ServerProcess;
  let browser: Browser;
  let context: BrowserContext;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let api: ReturnType<typeof createClient<typeof JobService>>;
  let scheduleApi: ReturnType<typeof createClient<typeof ScheduleService>>;
  const clientsOf = (interceptor: Interceptor) => {
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors: [interceptor] });
    return { jobs: createClient(JobService, transport), schedules: createClient(ScheduleService, transport), keys: createClient(KeyService, transport) };
  };

  before(async () => {
    receiver = await startReceiver();
    server = await startServerProcess({ HODEI_WEBHOOK_ALLOW_PRIVATE: "1" });
    ({ jobs: api, schedules: scheduleApi } = clientsOf(sendKey(server)));
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
    // The receiver outlives the server: it may still send while it stops.
    try {
      await stopLeavingNothing(server);
    } finally {
      await receiver.stop();
    }
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

  const cell = (page: Page, schedule: string, col: string) => page.locator(`tr[data-schedule="${schedule}"] [data-col="${col}"]`);
  const shownNames = (page: Page) => page.locator("tr[data-schedule]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-schedule")));
  const isGone = (name: string) =>
    scheduleApi.getSchedule({ name }).then(
      () => false,
      (err: unknown) => err instanceof ConnectError && err.code === Code.NotFound,
    );

  it("lists schedules with their values, pages them, and pauses, resumes and removes them from the buttons", async () => {
    const backup = await scheduleApi.createSchedule({ name: "backup", cron: "30 2 * * *", timezone: "Europe/Madrid", template: { command: ["./backup.sh"] } });
    const cleanup = await scheduleApi.createSchedule({ name: "cleanup", cron: "0 * * * *", paused: true, template: { command: ["echo", "clean up"] } });
    const page = await newPage();
    await page.goto(`${server.url}/schedules`);
    await signIn(page, server.adminKey);
    await page.locator('table[aria-label="schedules"][aria-busy="false"] tr[data-schedule]').first().waitFor();
    assert.deepEqual(await shownNames(page), ["backup", "cleanup"], "by name");
    assert.equal(await page.locator('table[aria-label="schedules"] th[scope="col"]').count(), 11, "column headers");

    assert.equal(await cell(page, "backup", "cron").innerText(), "30 2 * * * Europe/Madrid");
    assert.match(await cell(page, "backup", "next").innerText(), /^in \d/);
    assert.equal(await cell(page, "backup", "next").getAttribute("title"), isoTime(backup.nextRunAt), "the API's next run");
    assert.equal(await cell(page, "backup", "status").innerText(), "active");
    assert.equal(await cell(page, "backup", "last-job").innerText(), "—");
    assert.deepEqual([await cell(page, "backup", "fired").innerText(), await cell(page, "backup", "skipped").innerText()], ["0", "0"]);
    assert.equal(await cell(page, "backup", "command").innerText(), "./backup.sh");
    assert.equal(await cell(page, "backup", "created-by").innerText(), "admin");
    assert.equal(await cell(page, "cleanup", "cron").innerText(), "0 * * * * UTC");
    assert.equal(await cell(page, "cleanup", "next").innerText(), "— paused");
    assert.equal(await cell(page, "cleanup", "status").innerText(), "paused");
    assert.equal(await cell(page, "cleanup", "command").innerText(), "echo 'clean up'");
    assert.equal(cleanup.paused, true);

    // One a page: the server's cursor leads to the next.
    await page.goto(`${server.url}/schedules?limit=1`);
    await page.locator('tr[data-schedule="backup"]').waitFor();
    assert.deepEqual(await shownNames(page), ["backup"]);
    assert.equal(await page.getByRole("button", { name: "previous page" }).isDisabled(), true);
    await page.getByRole("button", { name: "next page" }).click();
    await page.locator('tr[data-schedule="cleanup"]').waitFor();
    assert.deepEqual(await shownNames(page), ["cleanup"]);
    assert.equal(await page.getByRole("button", { name: "next page" }).isDisabled(), true, "no third page");

    await page.goto(`${server.url}/schedules`);
    await page.getByRole("button", { name: "Pause backup" }).click();
    await cell(page, "backup", "status").filter({ hasText: "paused" }).waitFor();
    assert.equal((await scheduleApi.getSchedule({ name: "backup" })).paused, true, "the API sees it paused");
    await page.getByRole("button", { name: "Resume cleanup" }).click();
    await cell(page, "cleanup", "status").filter({ hasText: "active" }).waitFor();
    const resumed = await scheduleApi.getSchedule({ name: "cleanup" });
    assert.equal(resumed.paused, false, "the API sees it resumed");
    assert.equal(await cell(page, "cleanup", "next").getAttribute("title"), isoTime(resumed.nextRunAt));

    // Remove asks first: "Keep it" keeps it; confirming removes it.
    await page.getByRole("button", { name: "Remove cleanup" }).click();
    const dialog = page.getByRole("alertdialog", { name: "Remove schedule cleanup?" });
    await dialog.waitFor();
    // A modal dialog keeps the focus: it opens on "Keep it", and Tab / Shift+Tab go round its two buttons.
    const focused = () => page.evaluate<string>(`document.activeElement?.textContent?.trim() ?? ""`);
    assert.equal(await focused(), "Keep it");
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      await page.keyboard.press("Tab");
      seen.push(await focused());
    }
    await page.keyboard.press("Shift+Tab");
    seen.push(await focused());
    assert.deepEqual(seen, ["Remove cleanup", "Keep it", "Remove cleanup", "Keep it"]);
    await dialog.getByRole("button", { name: "Keep it" }).click();
    await dialog.waitFor({ state: "detached" });
    assert.equal(await isGone("cleanup"), false, "kept");
    await page.getByRole("button", { name: "Remove cleanup" }).click();
    await dialog.getByRole("button", { name: "Remove cleanup" }).click();
    await page.locator('tr[data-schedule="cleanup"]').waitFor({ state: "detached" });
    assert.equal(await isGone("cleanup"), true, "the API no longer has it");
    assert.deepEqual(await shownNames(page), ["backup"]);

    await scheduleApi.deleteSchedule({ name: "backup" });
    const empty = page.locator('table[aria-label="schedules"] td.empty');
    await empty.filter({ hasText: "No schedules yet" }).waitFor();
    assert.match(await empty.innerText(), /hodei schedule create NAME --cron EXPR -- CMD/, "says how to make one");
  });

  it("enables pause, resume and remove only for a key that may use them, and says why not", async () => {
    const { keys } = clientsOf(sendKey(server));
    const { key: opsKey } = await keys.createKey({ name: "ops", scopes: ["read", "submit", "provider:local"] });
    const { key: viewerKey } = await keys.createKey({ name: "viewer", scopes: ["read"] });
    const { key: runnerKey } = await keys.createKey({ name: "runner", scopes: ["submit", "provider:local"] });
    await clientsOf(withKey(opsKey)).schedules.createSchedule({ name: "ops-own", cron: "0 3 * * *", paused: true, template: { command: ["true"] } });
    await clientsOf(withKey(runnerKey)).schedules.createSchedule({ name: "runner-own", cron: "0 4 * * *", paused: true, template: { command: ["true"] } });
    await scheduleApi.createSchedule({ name: "admin-own", cron: "0 5 * * *", paused: true, template: { command: ["true"] } });

    let page = await newPage();
    await page.goto(`${server.url}/schedules`);
    await signIn(page, opsKey);
    await page.locator('tr[data-schedule="ops-own"]').waitFor();
    assert.equal(await page.getByRole("button", { name: "Resume ops-own" }).isEnabled(), true, "its own schedule");
    assert.equal(await page.getByRole("button", { name: "Remove ops-own" }).isEnabled(), true);
    for (const name of ["Resume admin-own", "Remove admin-own", "Resume runner-own"]) {
      const button = page.getByRole("button", { name });
      assert.equal(await button.isDisabled(), true, name);
      assert.match((await button.getAttribute("title")) ?? "", /only the schedules it created/);
    }
    await context.close();

    page = await newPage();
    await page.goto(`${server.url}/schedules`);
    await signIn(page, viewerKey);
    await page.locator('tr[data-schedule="ops-own"]').waitFor();
    assert.equal(await page.locator("tr[data-schedule] button:enabled").count(), 0, "a read key may change none");
    assert.match(await page.locator(".page").innerText(), /needs the "submit" scope/);
    await context.close();

    // A submit key cannot list schedules, but reads its own one by name (a job's page links there).
    page = await newPage();
    await page.goto(`${server.url}/schedules`);
    await signIn(page, runnerKey);
    await page.getByText('This key has no "read" scope, so it cannot list schedules').waitFor();
    assert.equal(await page.getByRole("link", { name: "Schedules" }).count(), 0, "not in the navigation");
    await page.goto(`${server.url}/schedules?name=runner-own`);
    await page.getByRole("button", { name: "Resume runner-own" }).click();
    await cell(page, "runner-own", "status").filter({ hasText: "active" }).waitFor();
    assert.equal((await scheduleApi.getSchedule({ name: "runner-own" })).paused, false);
    await page.goto(`${server.url}/schedules?name=admin-own`);
    await page.getByRole("alert").filter({ hasText: /lacks the scope .* to read schedule admin-own/ }).waitFor();

    for (const name of ["ops-own", "runner-own", "admin-own"]) await scheduleApi.deleteSchedule({ name });
  });

  it("shows a scheduled job's schedule and webhook delivery, and a job's trace id, with no secret", async () => {
    const nightly = await scheduleApi.createSchedule({ name: "nightly", cron: "0 3 * * *", timezone: "Europe/Madrid", template: { command: ["./backup.sh"] } });
    await scheduleApi.createSchedule({
      name: "report",
      cron: "* * * * * *",
      template: { command: ["echo report"], notify: [receiver.url("/hook?token=receiver-secret")] },
    });
    const fired = await eventually(async () => (await scheduleApi.getSchedule({ name: "report" })).lastJobId || null, 20_000);
    await scheduleApi.pauseSchedule({ name: "report" });
    const { jobs: firedJobs } = await api.listJobs({ labelSelector: "hodei.io/schedule=report", limit: 500 });
    for (const job of firedJobs) await waitDestroyed(server, job.id);
    assert.ok(firedJobs.some((j) => j.id === fired));

    const page = await newPage();
    await page.goto(`${server.url}/jobs/${fired}`);
    await signIn(page, server.adminKey);
    const scheduleLink = page.getByTestId("job-schedule").getByRole("link", { name: "report" });
    await scheduleLink.waitFor();
    assert.equal(await scheduleLink.getAttribute("href"), "/schedules?name=report");
    const delivery = page.locator('tr[data-delivery][data-state="delivered"]');
    await delivery.waitFor({ timeout: 20_000 });
    assert.equal(await delivery.locator('[data-col="url"]').innerText(), receiver.url("/hook"), "without its query");
    assert.equal(await delivery.locator('[data-col="requests"]').innerText(), "1");
    assert.equal(await delivery.locator('[data-col="answer"]').innerText(), "HTTP 204");
    assert.match(await delivery.locator('[data-col="when"]').innerText(), /^delivered /);
    assert.ok(receiver.requests.includes("/hook?token=receiver-secret"), "sent to the URL as given");
    assert.doesNotMatch(await page.content(), /receiver-secret/, "the receiver's token is not in the page");
    assert.equal(await page.getByTestId("job-trace").count(), 0, "no trace id: the server records no traces");
    await shoot(page, "job-schedule");
    await scheduleLink.click();
    await page.waitForURL(`${server.url}/schedules?name=report`);
    const report = await scheduleApi.getSchedule({ name: "report" });
    await cell(page, "report", "fired").filter({ hasText: String(report.firedTicks) }).waitFor();
    assert.match(await cell(page, "report", "last-job").innerText(), new RegExp(`^${report.lastJobId.slice(0, 8)} .* · all$`));
    await page.goto(`${server.url}/schedules`);
    await page.locator('tr[data-schedule="nightly"]').waitFor();
    assert.deepEqual(await shownNames(page), ["nightly", "report"]);
    await shoot(page, "schedules");
    await cell(page, "report", "last-job").getByRole("link", { name: "all" }).click();
    await page.waitForURL((url) => url.pathname === "/" && url.searchParams.get("label") === "hodei.io/schedule=report");
    await page.locator(`[data-job-id="${fired}"]`).waitFor();

    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const { job } = await api.submitJob({ command: ["true"], traceparent: `00-${traceId}-00f067aa0ba902b7-01`, notify: [receiver.url("/fail")] });
    await waitDestroyed(server, job!.id);
    await page.goto(`${server.url}/jobs/${job!.id}`);
    assert.equal(await page.getByTestId("job-trace").innerText(), traceId);
    assert.equal(await page.getByTestId("job-schedule").count(), 0, "submitted directly: no schedule");
    const failing = page.locator("tr[data-delivery]");
    await failing.locator('[data-col="answer"]').filter({ hasText: "HTTP 500" }).waitFor({ timeout: 20_000 });
    assert.equal(await failing.getAttribute("data-state"), "pending", "retried");
    assert.match(await failing.locator('[data-col="error"]').innerText(), /500/);
    assert.match(await failing.locator('[data-col="when"]').innerText(), /^next try /);

    for (const name of [nightly.name, "report"]) await scheduleApi.deleteSchedule({ name });
  });
});
