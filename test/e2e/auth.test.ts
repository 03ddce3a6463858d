/**
 * API keys against a real server process, attack by attack: no key, a key without the scope, a
 * key on someone else's job, a revoked key, auth turned off where the network can reach it. And
 * the admin key file (created once, mode 0600, never logged), the one-command start with no token,
 * and the commands that use every scope (verify, doctor). Every test proves no process is left.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { JobService } from "../../src/gen/hodei/v1/api_pb.js";
import {
  anyClusterProcesses,
  bearer,
  eventually,
  type JobJson,
  jobWhen,
  jsonCli,
  leftoverProcesses,
  runCli,
  type ServerProcess,
  spawnCli,
  startServerProcess,
  stopLeavingNothing,
  waitDestroyed,
} from "./harness.js";

const KEY_PATTERN = /hodei_key_[A-Za-z0-9_-]{43}/;

/** A Connect JSON call; `key` undefined sends no Authorization header. */
async function call(server: ServerProcess, method: string, body: unknown, key?: string) {
  const res = await fetch(`${server.url}/hodei.v1.JobService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
}

describe("API keys, through a real server", () => {
  let server: ServerProcess;
  /** The CLI as the holder of `key`. */
  const as = (key: string) => ({ env: { HODEI_TOKEN: key } });

  async function createKey(name: string, scopes: string): Promise<string> {
    const created = await jsonCli<{ name: string; key: string; scopes: string[] }>(server, ["keys", "create", "--name", name, "--scope", scopes]);
    return created.key;
  }

  async function detach(key: string | null, command: string, extra: string[] = []): Promise<string> {
    const result = await runCli(server, ["run", "--detach", ...extra, "--", command], key ? as(key) : {});
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.trim();
  }

  before(async () => {
    // Debug level: a key that reached any log line would show in server.output.
    server = await startServerProcess({ HODEI_LOG_LEVEL: "debug" });
  });
  after(async () => {
    await stopLeavingNothing(server);
  });

  it("answers a call without a key with 401 unauthenticated, saying how to get a key; health, readiness and metrics stay open", async () => {
    const listed = await call(server, "ListJobs", {});
    assert.equal(listed.status, 401);
    assert.equal(listed.body.code, "unauthenticated");
    assert.match(listed.body.message ?? "", /Authorization: Bearer <key>/);
    assert.match(listed.body.message ?? "", /hodei keys create/);
    const submitted = await call(server, "SubmitJob", { command: ["echo", "should not run"] });
    assert.equal(submitted.status, 401);
    const wrong = await call(server, "ListJobs", {}, `hodei_key_${"A".repeat(43)}`);
    assert.equal(wrong.status, 401);
    assert.match(wrong.body.message ?? "", /unknown or revoked/);

    // gRPC too, and a streaming call.
    const grpc = createClient(JobService, createGrpcTransport({ baseUrl: server.url }));
    const unary = await grpc.listJobs({}).catch((err: unknown) => ConnectError.from(err));
    assert.ok(unary instanceof ConnectError && unary.code === Code.Unauthenticated, String(unary));
    const stream = await (async () => {
      for await (const _ of grpc.getLogs({ jobId: "x" })) void _;
    })().catch((err: unknown) => ConnectError.from(err));
    assert.ok(stream instanceof ConnectError && stream.code === Code.Unauthenticated, String(stream));

    // The CLI with no key to send (another data directory: no admin.key there) says where it looked.
    const elsewhere = mkdtempSync(join(tmpdir(), "hodei-nokey-"));
    try {
      const cli = await runCli({ url: server.url, dataDir: elsewhere }, ["jobs"]);
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, /missing API key/);
      assert.ok(cli.stderr.includes(join(elsewhere, "admin.key")), cli.stderr);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }

    for (const path of ["/healthz", "/readyz", "/metrics"]) assert.equal((await fetch(`${server.url}${path}`)).status, 200, path);
    const jobs = await jsonCli<JobJson[]>(server, ["jobs"]);
    assert.deepEqual(jobs, [], "nothing was submitted");
  });

  it("refuses SubmitJob from a read key with 403, naming the submit scope", async () => {
    const reader = await createKey("reader", "read");
    const run = await runCli(server, ["run", "--", "echo", "should not run"], as(reader));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /lacks the scope "submit"/);
    const raw = await call(server, "SubmitJob", { command: ["echo", "should not run"] }, reader);
    assert.equal(raw.status, 403);
    assert.equal(raw.body.code, "permission_denied");
    assert.match(raw.body.message ?? "", /"submit"/);
    assert.equal((await call(server, "ListJobs", {}, reader)).status, 200, "it reads");
    assert.deepEqual(await jsonCli<JobJson[]>(server, ["jobs"]), []);
  });

  it("refuses a local job from a submit key without provider:local with 403, naming provider:local", async () => {
    const dockerOnly = await createKey("docker-only", "submit,provider:docker");
    const run = await runCli(server, ["run", "--", "echo", "should not run"], as(dockerOnly));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /lacks the scope "provider:local"/);
    const raw = await call(server, "SubmitJob", { command: ["true"], provider: "local" }, dockerOnly);
    assert.equal(raw.status, 403);
    assert.match(raw.body.message ?? "", /provider:local/);
    assert.deepEqual(await jsonCli<JobJson[]>(server, ["jobs"]), []);
  });

  it("lets a submit key cancel only the jobs it submitted", async () => {
    const ci = await createKey("ci", "submit,provider:local");
    const others = await detach(null, "sleep 300");
    const own = await detach(ci, "sleep 300");
    await jobWhen(server, others, (j) => j.state === "running", 20_000);

    const refused = await runCli(server, ["cancel", others], as(ci));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /lacks the scope "admin" to cancel job .* which it did not submit/);
    const raw = await call(server, "CancelJob", { id: others }, ci);
    assert.equal(raw.status, 403);
    assert.equal((await jsonCli<JobJson>(server, ["jobs", "get", others])).state, "running", "the other job runs on");

    const canceled = await runCli(server, ["cancel", own], as(ci));
    assert.equal(canceled.code, 0, canceled.stderr);
    assert.equal((await waitDestroyed(server, own)).state, "canceled");
    assert.equal((await runCli(server, ["cancel", others])).code, 0, "admin cancels any job");
    assert.equal((await waitDestroyed(server, others)).state, "canceled");
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("stops a revoked key at once, and ends the log follower that uses it", async () => {
    const temp = await createKey("temp", "read,submit,provider:local");
    const id = await detach(temp, "echo started; sleep 300");
    const follower = spawnCli(server, ["logs", "-f", id], { HODEI_TOKEN: temp });
    let out = "";
    let err = "";
    follower.stdout!.on("data", (d: Buffer) => (out += d));
    follower.stderr!.on("data", (d: Buffer) => (err += d));
    const exited = new Promise<number | null>((resolve) => follower.once("exit", resolve));
    assert.ok(await eventually(() => out.includes("started")), "the follower reads the job's output");

    assert.equal((await runCli(server, ["keys", "revoke", "temp"])).code, 0);
    const revokedAt = Date.now();
    const refused = await runCli(server, ["jobs", "get", id], as(temp));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /unknown or revoked/);
    assert.equal((await call(server, "GetJob", { id }, temp)).status, 401);

    const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve("still following"), 10_000))]);
    if (code === "still following") follower.kill("SIGKILL");
    assert.equal(code, 1, `the follower ended with an error (${err})`);
    assert.match(err, /revoked/);
    console.log(`log follower ended ${Date.now() - revokedAt} ms after the revocation`);

    assert.equal((await runCli(server, ["cancel", id])).code, 0);
    await waitDestroyed(server, id);
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("records who submitted each job, shown by jobs get (human and --json)", async () => {
    const builder = await createKey("builder", "submit,provider:local");
    const byAdmin = await detach(null, "true");
    const byBuilder = await detach(builder, "true");
    assert.equal((await jsonCli<JobJson>(server, ["jobs", "get", byAdmin])).submittedBy, "admin");
    assert.equal((await jsonCli<JobJson>(server, ["jobs", "get", byBuilder])).submittedBy, "builder");
    const human = await runCli(server, ["jobs", "get", byBuilder], as(builder));
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /submitted by\s+builder/);
    await waitDestroyed(server, byAdmin);
    await waitDestroyed(server, byBuilder);
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("shows job env values only to keys with read: a submit key sees the names of its own job's env", async () => {
    const secret = "swordfish-31337";
    const submitter = await createKey("env-submitter", "submit,provider:local");
    const reader = await createKey("env-reader", "read");
    const id = await detach(submitter, "true", ["-e", `PASSWORD=${secret}`, "-e", "MODE=fast"]);

    const own = await jsonCli<JobJson>(server, ["jobs", "get", id], as(submitter).env);
    assert.deepEqual(own.env, { PASSWORD: "", MODE: "" });
    assert.equal(own.envRedacted, true);
    const human = await runCli(server, ["jobs", "get", id], as(submitter));
    assert.match(human.stdout, /env\s+PASSWORD MODE \(values hidden/);
    assert.ok(!human.stdout.includes(secret));
    const raw = await call(server, "GetJob", { id }, submitter);
    assert.ok(!JSON.stringify(raw.body).includes(secret), "not over the wire either");

    for (const key of [reader, server.adminKey]) {
      const shown = await jsonCli<JobJson>(server, ["jobs", "get", id], as(key).env);
      assert.deepEqual(shown.env, { PASSWORD: secret, MODE: "fast" });
      assert.equal(shown.envRedacted, false);
    }
    await waitDestroyed(server, id);
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("prints a new key once as {name, key, scopes}; lists keys without them; only admin manages keys", async () => {
    const created = await runCli(server, ["keys", "create", "--name", "lister", "--scope", "read", "--scope", "submit,provider:local", "--json"]);
    assert.equal(created.code, 0, created.stderr);
    const json = JSON.parse(created.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(json), ["name", "key", "scopes"]);
    assert.equal(json.name, "lister");
    assert.match(String(json.key), new RegExp(`^${KEY_PATTERN.source}$`));
    assert.deepEqual(json.scopes, ["read", "submit", "provider:local"]);
    const plain = await runCli(server, ["keys", "create", "--name", "plain", "--scope", "read"]);
    assert.match(plain.stdout, new RegExp(`^${KEY_PATTERN.source}\\n$`), "the key alone on stdout");
    assert.match(plain.stderr, /not shown again/);

    await runCli(server, ["jobs"], as(String(json.key)));
    const listed = await runCli(server, ["keys", "ls", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.doesNotMatch(listed.stdout, /hodei_key_/);
    const keys = JSON.parse(listed.stdout) as { name: string; scopes: string[]; createdAt: string; lastUsedAt: string | null; revokedAt: string | null }[];
    const lister = keys.find((k) => k.name === "lister");
    assert.deepEqual(lister?.scopes, ["read", "submit", "provider:local"]);
    assert.ok(lister?.createdAt && lister.lastUsedAt, "created and used");
    assert.ok(keys.every((k) => k.revokedAt === null), "only working keys by default");
    assert.ok(!keys.some((k) => k.name === "temp"), "the revoked key is not listed");
    const all = await jsonCli<{ name: string; revokedAt: string | null }[]>(server, ["keys", "ls", "--all"]);
    assert.ok(all.find((k) => k.name === "temp")?.revokedAt, "--all lists revoked keys");
    const table = await runCli(server, ["keys", "ls"]);
    assert.match(table.stdout, /^NAME\s+SCOPES\s+CREATED\s+LAST USED/);
    assert.doesNotMatch(table.stdout, /hodei_key_/);

    const byReader = await runCli(server, ["keys", "ls"], as(String(json.key)));
    assert.equal(byReader.code, 1);
    assert.match(byReader.stderr, /lacks the scope "admin"/);
    const taken = await runCli(server, ["keys", "create", "--name", "lister", "--scope", "read"]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /exists or existed/);
  });

  it("keeps verify and doctor working with the admin key, and verify with read,submit,provider:local", async () => {
    const doctor = await runCli(server, ["doctor"], { timeoutMs: 120_000 });
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    const verify = await runCli(server, ["verify", "--providers", "local", "--json"], { timeoutMs: 180_000 });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.equal((JSON.parse(verify.stdout) as { ok: boolean }).ok, true);
    const operator = await createKey("operator", "read,submit,provider:local");
    const again = await runCli(server, ["verify", "--providers", "local"], { ...as(operator), timeoutMs: 180_000 });
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("never wrote a key to its log, at debug level, through all of the above", () => {
    const log = server.output.join("\n");
    assert.ok(server.output.length > 20, "the server logged");
    assert.ok(log.includes(join(server.dataDir, "admin.key")), "the admin key's path is logged");
    assert.ok(!log.includes(server.adminKey), "the admin key is not");
    assert.doesNotMatch(log, /hodei_key_/, "nor any other key");
  });
});

describe("the admin key file", () => {
  it("is created once with mode 0600; its path is logged, never its content; a restart leaves it as it was", async () => {
    const first = await startServerProcess({ HODEI_LOG_LEVEL: "debug" });
    const { dataDir, clusterId } = first;
    const path = join(dataDir, "admin.key");
    try {
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const content = readFileSync(path, "utf8");
      assert.match(content, new RegExp(`^${KEY_PATTERN.source}\\n$`));
      assert.ok(first.output.some((line) => line.includes("admin key created") && line.includes(path)));
      assert.ok(!first.output.join("\n").includes(content.trim()));
      const before = statSync(path);
      await first.stop();

      const second = await startServerProcess({ HODEI_LOG_LEVEL: "debug" }, { dataDir, clusterId });
      try {
        const after = statSync(path);
        assert.equal(readFileSync(path, "utf8"), content);
        assert.equal(after.ino, before.ino);
        assert.equal(after.mtimeMs, before.mtimeMs);
        assert.ok(!second.output.some((line) => line.includes("admin key created")), "no second key");
        assert.ok(second.output.some((line) => line.includes("admin key file found")));
        assert.ok(!second.output.join("\n").includes(content.trim()));
        const keys = await jsonCli<{ name: string }[]>(second, ["keys", "ls"]);
        assert.deepEqual(keys.map((k) => k.name), ["admin"]);
      } finally {
        await second.stop();
      }
    } finally {
      await first.stop();
      assert.deepEqual(await anyClusterProcesses(clusterId), []);
      first.cleanup();
    }
  });

  it("lives in a data directory made for its user only (0700); one that others can read is warned about", async () => {
    const parent = mkdtempSync(join(tmpdir(), "hodei-e2e-"));
    const dataDir = join(parent, "data");
    const first = await startServerProcess({}, { dataDir });
    try {
      assert.equal(statSync(dataDir).mode & 0o777, 0o700, "made 0700");
      assert.ok(!first.output.some((line) => line.includes("the data directory can be read by other users")));
      await first.stop();
      chmodSync(dataDir, 0o755);
      const second = await startServerProcess({}, { dataDir, clusterId: first.clusterId });
      try {
        const warned = second.output.find((line) => line.includes("the data directory can be read by other users"));
        assert.ok(warned?.includes('"level":40') && warned.includes('"mode":"755"') && warned.includes("chmod 700"), second.output.join("\n"));
      } finally {
        await stopLeavingNothing(second);
      }
    } finally {
      await first.stop();
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it("is never overwritten: one whose key does not work (the database started afresh) is kept, and the server says so", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "hodei-e2e-"));
    const stale = `hodei_key_${"S".repeat(43)}\n`;
    writeFileSync(join(dataDir, "admin.key"), stale, { mode: 0o600 });
    const server = await startServerProcess({}, { dataDir });
    try {
      assert.equal(readFileSync(join(dataDir, "admin.key"), "utf8"), stale);
      assert.ok(server.output.some((line) => line.includes('"level":40') && line.includes("not overwritten")), server.output.join("\n"));
      const cli = await runCli(server, ["jobs"]);
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, /unknown or revoked/);
      assert.ok(cli.stderr.includes(join(dataDir, "admin.key")), "the CLI says which key it sent");
    } finally {
      await stopLeavingNothing(server);
    }
  });
});

describe("HODEI_ADMIN_KEY_FILE (the operator's key, a mounted Secret in a cluster)", () => {
  it("makes the given key an admin key and writes no admin.key; a restart keeps it; a key of the wrong shape stops the server", async () => {
    const secrets = mkdtempSync(join(tmpdir(), "hodei-secret-"));
    const keyFile = join(secrets, "key");
    const given = `hodei_key_${"G".repeat(20)}${"h".repeat(23)}`;
    writeFileSync(keyFile, `${given}\n`, { mode: 0o400 });
    const dataDir = mkdtempSync(join(tmpdir(), "hodei-e2e-"));
    let server = await startServerProcess({ HODEI_ADMIN_KEY_FILE: keyFile }, { dataDir });
    try {
      assert.equal(existsSync(join(dataDir, "admin.key")), false, "no admin.key is written");
      assert.equal((await call(server, "ListJobs", {}, given)).status, 200, "the given key is an admin key");
      assert.equal((await runCli(server, ["keys", "ls", "--json"], { env: { HODEI_TOKEN: given } })).code, 0);
      assert.ok(!server.output.some((line) => line.includes(given)), "the key is never logged");
      const { port, clusterId } = server;
      await server.stop();
      server = await startServerProcess({ HODEI_ADMIN_KEY_FILE: keyFile }, { dataDir, port, clusterId });
      const keys = JSON.parse((await runCli(server, ["keys", "ls", "--json"], { env: { HODEI_TOKEN: given } })).stdout) as { name: string }[];
      assert.deepEqual(keys.map((k) => k.name), ["admin"], "stored once, not again at every start");
    } finally {
      await stopLeavingNothing(server);
    }
    writeFileSync(keyFile, "not-a-key\n");
    await assert.rejects(startServerProcess({ HODEI_ADMIN_KEY_FILE: keyFile }), /HODEI_ADMIN_KEY_FILE=.*does not hold an API key: it must be hodei_key_ and 43 base64url characters/);
    rmSync(secrets, { recursive: true, force: true });
  });
});

describe("HODEI_AUTH=off", () => {
  it("is refused on 0.0.0.0 without HODEI_AUTH_INSECURE=1, with a message saying what to do", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "hodei-e2e-"));
    const refused = await startServerProcess({ HODEI_HOST: "0.0.0.0", HODEI_AUTH: "off" }, { dataDir }).then(
      async (server) => {
        await server.stop();
        return "started";
      },
      (err: Error) => err.message,
    );
    rmSync(dataDir, { recursive: true, force: true });
    assert.match(refused, /server exited with 2 before listening/);
    assert.match(refused, /HODEI_AUTH=off with HODEI_HOST=0\.0\.0\.0/);
    assert.match(refused, /HODEI_AUTH_INSECURE=1/);
  });

  it("with HODEI_AUTH_INSECURE=1 serves without keys, warns, and writes no admin key", async () => {
    // The one test with auth off: it is what is under test.
    const server = await startServerProcess({ HODEI_HOST: "0.0.0.0", HODEI_AUTH: "off", HODEI_AUTH_INSECURE: "1" });
    try {
      assert.ok(server.output.some((line) => line.includes('"level":40') && line.includes("HODEI_AUTH=off")));
      assert.equal(server.adminKey, "");
      const run = await runCli({ url: server.url }, ["run", "--", "echo", "open"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, "open\n");
      const [job] = await jsonCli<JobJson[]>({ url: server.url }, ["jobs"]);
      assert.equal(job.submittedBy, "");
      await waitDestroyed({ url: server.url }, job.id);
      assert.deepEqual(await leftoverProcesses(server), []);
    } finally {
      await stopLeavingNothing(server);
    }
  });
});

describe("HODEI_AUTH=off on loopback, against DNS rebinding", () => {
  /** A request to the server with a Host header of our choosing (what a rebound page sends). */
  function request(server: ServerProcess, path: string, host: string, body?: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${server.url}${path}`, { method: body === undefined ? "GET" : "POST", headers: { host, ...(body === undefined ? {} : { "content-type": "application/json" }) } }, (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  it("refuses API and dashboard requests addressed to another name, and serves loopback names", async () => {
    const server = await startServerProcess({ HODEI_AUTH: "off", HODEI_LOCAL_WARM_WORKERS: "0" });
    try {
      const submit = JSON.stringify({ command: ["sh", "-c", "echo rebound"] });
      const port = new URL(server.url).port;
      for (const host of [`rebind.attacker.example:${port}`, "rebind.attacker.example", `127.0.0.1.attacker.example:${port}`, `localhost.attacker.example:${port}`]) {
        const refused = await request(server, "/hodei.v1.JobService/SubmitJob", host, submit);
        assert.equal(refused.status, 403, host);
        assert.match(refused.text, /runs without authentication \(HODEI_AUTH=off\) and answers requests addressed to 127\.0\.0\.1, localhost or this machine's name only/);
        assert.equal((await request(server, "/", host)).status, 403, `the dashboard, for ${host}`);
      }
      assert.deepEqual(await jsonCli<JobJson[]>({ url: server.url }, ["jobs"]), [], "no refused submit stored a job");
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `app.localhost:${port}`]) {
        const served = await request(server, "/hodei.v1.JobService/ListJobs", host, "{}");
        assert.equal(served.status, 200, `${host}: ${served.text}`);
      }
      const run = await runCli({ url: server.url }, ["run", "--", "echo", "local"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, "local\n", "the CLI and agents, on loopback, are served");
      const [job] = await jsonCli<JobJson[]>({ url: server.url }, ["jobs"]);
      await waitDestroyed({ url: server.url }, job.id);
    } finally {
      await stopLeavingNothing(server);
    }
  });
});

/** An address of this machine other than loopback, if it has one. */
function externalAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
}

describe("the one-command start", () => {
  let cwd: string;
  let server: ServerProcess;

  before(async () => {
    cwd = mkdtempSync(join(tmpdir(), "hodei-start-"));
    // As `npx hodei server` in a directory: no HODEI_DATA_DIR, so the data directory is ./.hodei.
    // Listening on every address, so that the same server can be reached at a non-loopback one.
    server = await startServerProcess({ HODEI_HOST: "0.0.0.0" }, { cwd });
  });
  after(async () => {
    await stopLeavingNothing(server);
    rmSync(cwd, { recursive: true, force: true });
  });

  it("runs `hodei run` (bin/hodei.js) with no token from the same directory against the loopback server", async () => {
    // No HODEI_TOKEN, no --token, no HODEI_DATA_DIR: the CLI finds ./.hodei/admin.key by itself.
    const run = await runCli({ url: server.url }, ["run", "--", "echo", "hi"], { cwd });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "hi\n");
    const viaName = await runCli(null, ["--server", `http://localhost:${server.port}`, "jobs", "--json"], { cwd });
    assert.equal(viaName.code, 0, viaName.stderr);
    assert.equal((JSON.parse(viaName.stdout) as JobJson[])[0].submittedBy, "admin");
    assert.deepEqual(await leftoverProcesses(server), []);
  });

  it("never sends the admin key file to a server at another address", { skip: externalAddress() ? false : "this machine has no non-loopback IPv4 address" }, async () => {
    const remote = await runCli(null, ["--server", `http://${externalAddress()}:${server.port}`, "jobs"], { cwd });
    assert.equal(remote.code, 1);
    assert.match(remote.stderr, /missing API key/);
    assert.match(remote.stderr, /no --token or HODEI_TOKEN/);
  });
});
