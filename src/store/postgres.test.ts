/**
 * What only PostgreSQL has: opening it (errors that say what to fix, the password never shown),
 * int8 read exactly, migrations by several replicas at once and from an older schema, text in
 * binary order whatever the database's locale, and claims from many connections at once.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { sql } from "kysely";
import pg from "pg";
import { claimOne } from "../../test/fixtures/claim.js";
import { OLD_JOBS, OLD_SECRETS } from "../../test/fixtures/old-secret-rows.js";
import { startPostgres, skipWithoutPostgres, type TestPostgres } from "../../test/fixtures/postgres.js";
import { ManualClock } from "../core/clock.js";
import { workerName } from "../core/ids.js";
import { validateJobSpec } from "../core/job-spec.js";
import { openDatabase } from "./database.js";
import { redactDatabaseUrl } from "./database-url.js";
import { PgNotifier } from "./pg-notifier.js";
import { createPostgresDatabase, parseInt8 } from "./postgres.js";
import { Store } from "./store.js";

const SKIP = skipWithoutPostgres("the PostgreSQL store tests");
const spec = (labels: Record<string, string> = {}) =>
  validateJobSpec({ command: ["true"], labels }, { provider: "local", timeoutSeconds: 60, providers: ["local"] });

describe("postgres: values and URLs", () => {
  it("reads int8 as a number and refuses one beyond Number.MAX_SAFE_INTEGER", () => {
    assert.equal(parseInt8("1735689600000"), 1735689600000);
    assert.equal(parseInt8("-5"), -5);
    assert.throws(() => parseInt8("9007199254740993"), /beyond Number.MAX_SAFE_INTEGER/);
  });

  it("redacts the password of a URL, in the user part or as a parameter", () => {
    assert.equal(redactDatabaseUrl("postgres://hodei:s3cr%40t@db:5432/hodei?sslmode=verify-full"), "postgres://hodei:***@db:5432/hodei?sslmode=verify-full");
    assert.equal(redactDatabaseUrl("postgresql://db/hodei?user=h&password=s3cret&x=1"), "postgresql://db/hodei?user=h&password=***&x=1");
    assert.equal(redactDatabaseUrl("postgres://hodei@db/hodei"), "postgres://hodei@db/hodei");
  });

  it("refuses a URL without a database, saying how to write one", async () => {
    await assert.rejects(openDatabase("postgres://u:pw@127.0.0.1:1/"), (err: Error) => {
      assert.match(err.message, /postgres:\/\/USER\[:PASSWORD\]@HOST/);
      assert.doesNotMatch(err.message, /pw/);
      return true;
    });
  });

  it("refuses, at start, a URL whose TLS file is missing, naming it without the password", async () => {
    await assert.rejects(openDatabase("postgres://u:hunter2@127.0.0.1:1/hodei?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"), (err: Error) => {
      assert.match(err.message, /HODEI_DATABASE_URL postgres:\/\/u:\*\*\*@.*ENOENT.*\/nonexistent\/ca\.pem/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });

  it("says nothing listens when the port is closed, without the password", async () => {
    await assert.rejects(openDatabase("postgres://u:hunter2@127.0.0.1:1/hodei", { pool: { size: 1, connectTimeoutMs: 2000, statementTimeoutMs: 1000 } }), (err: Error) => {
      assert.match(err.message, /nothing listens there/);
      assert.match(err.message, /u:\*\*\*@127\.0\.0\.1:1\/hodei/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });
});

describe("postgres: TLS files named by the URL", () => {
  it("are read once: one removed later fails no connection attempt by a throw, on the pool or the listener", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hodei-pg-tls-"));
    const ca = join(dir, "ca.pem");
    writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n");
    // Nothing listens on port 1: every connection attempt fails, as while a database restarts.
    const url = `postgres://hodei@127.0.0.1:1/hodei?sslmode=verify-full&sslrootcert=${ca}`;
    const options = { size: 1, connectTimeoutMs: 2000, statementTimeoutMs: 1000 };
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);
    const { pool } = createPostgresDatabase(url, options);
    const warnings: string[] = [];
    const notifier = new PgNotifier(url, options, pool);
    notifier.setLog({ warn: (_fields, message) => warnings.push(message), info() {} });
    try {
      rmSync(ca);
      // Two queries on a pool of one: the second connection is opened where pg-pool handles the
      // first one's failure, which is where a throw would escape.
      const results = await Promise.allSettled([pool.query("select 1"), pool.query("select 1")]);
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.match(String((r as PromiseRejectedResult).reason?.message), /ECONNREFUSED/);
      }
      // The listener's (re)connection reads the URL again: the missing file is a failed try, retried.
      notifier.subscribe("reconcile", () => {});
      for (let i = 0; i < 100 && warnings.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.match(warnings[0] ?? "", /database listener (cannot connect|lost); re(trying|connecting)/);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(uncaught.map((e) => e.message), []);
    } finally {
      process.off("uncaughtException", onUncaught);
      process.off("unhandledRejection", onUncaught);
      await notifier.close();
      await pool.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * A PostgreSQL that logs anyone in, answers the first `answered` queries (as a LISTEN: one
 * CommandComplete per statement, then ready), then freezes: it reads on and never answers or closes,
 * as a stopped process or a paused VM does.
 */
async function frozenPostgres(answered: number): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const message = (type: string, body: Buffer) => {
    const head = Buffer.alloc(5);
    head.write(type, 0, "latin1");
    head.writeUInt32BE(body.length + 4, 1);
    return Buffer.concat([head, body]);
  };
  const ready = message("Z", Buffer.from("I"));
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    let left = answered;
    socket.once("data", () => {
      socket.write(Buffer.concat([message("R", Buffer.alloc(4)), ready])); // AuthenticationOk, ReadyForQuery
      socket.on("data", (data: Buffer) => {
        if (data[0] !== 0x51 || left-- <= 0) return; // 'Q', and still answering
        const statements = data.toString("latin1").split(";").length;
        const done = Array.from({ length: statements }, () => message("C", Buffer.from("LISTEN\0")));
        socket.write(Buffer.concat([...done, ready]));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `postgres://hodei@127.0.0.1:${port}/hodei`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("postgres: a database that freezes", () => {
  const options = { size: 1, connectTimeoutMs: 2000, statementTimeoutMs: 300 };

  it("does not hold the listener's close (a server's shutdown) for ever", async () => {
    const frozen = await frozenPostgres(1);
    const { pool } = createPostgresDatabase(frozen.url, options);
    const notifier = new PgNotifier(frozen.url, options, pool);
    try {
      notifier.subscribe("reconcile", () => {});
      await notifier.listening;
      const closed = notifier.close().then(() => "closed");
      assert.equal(await Promise.race([closed, new Promise((r) => setTimeout(() => r("still waiting"), 10_000))]), "closed");
    } finally {
      await pool.end();
      await frozen.close();
    }
  });

  it("retries a LISTEN it gets no answer to, instead of waiting for it for ever", async () => {
    const frozen = await frozenPostgres(0);
    const { pool } = createPostgresDatabase(frozen.url, options);
    const notifier = new PgNotifier(frozen.url, options, pool);
    const warnings: string[] = [];
    notifier.setLog({ warn: (_f, message) => warnings.push(message), info() {} });
    try {
      notifier.subscribe("reconcile", () => {});
      // The LISTEN's limit is the statement limit plus the client's margin: 1.3 s here.
      for (let i = 0; i < 250 && warnings.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(warnings.slice(0, 1), ["database listener lost; reconnecting"]);
    } finally {
      await notifier.close();
      await pool.end();
      await frozen.close();
    }
  });
});

describe("postgres: a real server", { skip: SKIP }, () => {
  let postgres: TestPostgres;
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    await postgres.close();
    assert.deepEqual(postgres.leftoverProcesses(), [], "the fixture's cluster left no process");
  });

  it("says a database that does not exist must be created", async () => {
    const url = new URL(postgres.adminUrl);
    url.pathname = "/hodei_missing_database";
    await assert.rejects(openDatabase(url.toString()), /the database does not exist: create it/);
  });

  it("survives a connection the server ends while a query or a transaction holds it: the caller gets the error, the process goes on", async () => {
    const url = await postgres.createDatabase("hodei_terminated");
    const name = new URL(url).pathname.slice(1);
    const opened = await openDatabase(url);
    const admin = new pg.Client({ connectionString: postgres.adminUrl });
    await admin.connect();
    // An 'error' event nobody listens to would end this process (the test runner reports it).
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    try {
      const terminate = async (what: string) => {
        for (let i = 0; i < 200; i++) {
          const r = await admin.query<{ pid: number }>("select pid from pg_stat_activity where datname = $1 and query like $2 and pid <> pg_backend_pid()", [name, `%${what}%`]);
          if (r.rows[0]) {
            await admin.query("select pg_terminate_backend($1)", [r.rows[0].pid]);
            return;
          }
          await new Promise((done) => setTimeout(done, 25));
        }
        throw new Error(`no backend ran ${what}`);
      };
      // 1. Between two statements of a transaction (the connection checked out, no query on it).
      let inside: () => void = () => {};
      const insideReached = new Promise<void>((r) => (inside = r));
      let release: () => void = () => {};
      const released = new Promise<void>((r) => (release = r));
      const transaction = opened.db.transaction().execute(async (trx) => {
        await sql`select 1 as marker_two`.execute(trx);
        inside();
        await released;
        await sql`select 2`.execute(trx);
      });
      transaction.catch(() => {});
      await insideReached;
      await terminate("marker_two");
      // The connection's end reaches its client (a loopback socket: at once; the margin is for a busy machine).
      await new Promise((r) => setTimeout(r, 200));
      release();
      await assert.rejects(transaction, /not queryable|terminat/i);
      // 2. While a statement runs: the statement fails with the server's reason.
      const sleeping = sql`select pg_sleep(30) as marker_one`.execute(opened.db);
      sleeping.catch(() => {});
      await terminate("marker_one");
      await assert.rejects(sleeping, /terminating connection due to administrator command/);
      // That connection went back to the pool before its end arrived; the end removes it from there.
      await new Promise((r) => setTimeout(r, 200));
      // The pool dropped both dead connections and works on.
      assert.equal((await sql<{ n: number }>`select 1 as n`.execute(opened.db)).rows[0].n, 1);
      assert.deepEqual(uncaught.map((e) => e.message), []);
    } finally {
      process.off("uncaughtException", onUncaught);
      await admin.end();
      await opened.db.destroy();
      await postgres.drop(url);
    }
  });

  it("migrates one fresh database with three replicas starting at once: each step runs once", async () => {
    const url = await postgres.createDatabase("hodei_migrate3");
    const opened = await Promise.all([openDatabase(url), openDatabase(url), openDatabase(url)]);
    try {
      assert.deepEqual(opened.map((o) => o.isNew).sort(), [false, false, true], "exactly one replica created the schema");
      const steps = await sql<{ name: string; n: string }>`select name, count(*) as n from kysely_migration group by name`.execute(opened[0].db);
      assert.ok(steps.rows.length >= 21);
      assert.ok(steps.rows.every((r) => Number(r.n) === 1));
      // Each replica works on the result.
      for (const [i, o] of opened.entries()) await new Store(o.db, o.kind).jobs.insert(`job-${i}`, spec(), 1000);
      assert.equal(await new Store(opened[0].db, "postgres").countRows("jobs"), 3);
    } finally {
      for (const o of opened) await o.db.destroy();
      await postgres.drop(url);
    }
  });

  it("migrates a database an older release left, keeping its rows", async () => {
    const url = await postgres.createDatabase("hodei_migrate_old");
    const old = await openDatabase(url, { migrateUpTo: "0012_job_submitted_by" });
    await old.db
      .insertInto("jobs" as never)
      .values({
        id: "old-job",
        state: "succeeded",
        command: '["true"]',
        script: "",
        provider: "local",
        env: "{}",
        timeout_seconds: 60,
        labels: '{"team":"a"}',
        image: "",
        idempotency_key: null,
        max_attempts: 1,
        attempts: 1,
        exit_code: 0,
        reason: "",
        logs_truncated: 0,
        logs_incomplete: 0,
        not_before_ms: 1000,
        created_at: 1000,
        updated_at: 2000,
        finished_at: 2000,
      } as never)
      .execute();
    // A job with an idempotency key: 0030 moves it into its API key's namespace.
    await old.db
      .insertInto("jobs" as never)
      .values({ ...(await old.db.selectFrom("jobs" as never).selectAll().executeTakeFirstOrThrow()), id: "keyed-job", idempotency_key: "deploy-1", submitted_by: "ci" } as never)
      .execute();
    await old.db.destroy();
    const now = await openDatabase(url);
    try {
      assert.equal(now.isNew, false);
      const store = new Store(now.db, now.kind);
      const job = await store.jobs.get("old-job");
      assert.equal(job?.state, "succeeded");
      assert.equal(job?.finished_at, 2000);
      assert.equal(job?.priority, 0);
      assert.equal(job?.secret_names, "[]");
      const labelled = await store.jobs.list({ limit: 10, labels: [["team", "a"]] });
      assert.deepEqual(labelled.map((j) => j.id).sort(), ["keyed-job", "old-job"], "0014 copied the labels into job_labels");
      assert.equal(job?.idempotency_key, null);
      assert.equal((await store.jobs.get("keyed-job"))?.idempotency_key, "ci:deploy-1", "0030 scoped the key to its API key");
    } finally {
      await now.db.destroy();
      await postgres.drop(url);
    }
  });

  it("names the secrets of jobs from before 0018 (migration 0031), so that their end deletes them", async () => {
    const url = await postgres.createDatabase("hodei_migrate_secrets");
    const old = await openDatabase(url, { migrateUpTo: "0017_job_secrets" });
    await old.db.insertInto("jobs" as never).values(OLD_JOBS as never).execute();
    await old.db.insertInto("job_secrets" as never).values(OLD_SECRETS as never).execute();
    await old.db.destroy();
    const now = await openDatabase(url);
    try {
      const store = new Store(now.db, now.kind);
      assert.equal((await store.jobs.get("with-secrets"))?.secret_names, '["API_TOKEN","DB_PASSWORD"]');
      assert.equal((await store.jobs.get("without"))?.secret_names, "[]");
      for (const id of ["with-secrets", "without"]) assert.ok(await store.attempts.cancel(id, "done", 2000, 3000));
      assert.equal(await store.countRows("job_secrets"), 0, "the secrets went with their job's end");
    } finally {
      await now.db.destroy();
      await postgres.drop(url);
    }
  });

  it("orders text byte by byte, as SQLite does, on a database with a linguistic (ICU) collation", async (t) => {
    const name = `hodei_icu_${process.pid}`;
    try {
      await postgres.query(`create database "${name}" template template0 locale_provider icu icu_locale 'en-US' locale 'C.UTF-8'`);
    } catch (err) {
      t.skip(`this server cannot create an ICU database: ${(err as Error).message}`);
      return;
    }
    const u = new URL(postgres.adminUrl);
    u.pathname = `/${name}`;
    const { db, kind } = await openDatabase(u.toString());
    try {
      const store = new Store(db, kind);
      // Under en-US "a" < "B" and "job-b" sorts near "jobb"; in bytes "B" (0x42) < "a" (0x61) and "-" < "b".
      for (const id of ["job-a", "jobB", "job-B", "joba"]) await store.jobs.insert(id, spec({ team: "x" }), 5000);
      const expected = ["job-B", "job-a", "jobB", "joba"].reverse();
      assert.deepEqual((await store.jobs.list({ limit: 10 })).map((j) => j.id), expected);
      assert.deepEqual((await store.jobs.list({ limit: 10, labels: [["team", "x"]] })).map((j) => j.id), expected);
      const page = await store.jobs.list({ limit: 10, before: { createdAt: 5000, id: "jobB" } });
      assert.deepEqual(page.map((j) => j.id), ["job-a", "job-B"]);
      for (const keyName of ["b", "A", "a", "B"]) await store.keys.insert({ name: keyName, keyHash: `h-${keyName}`, scopes: ["admin"] }, 1);
      assert.deepEqual((await store.keys.list(true)).map((k) => k.name), ["A", "B", "a", "b"]);
    } finally {
      await db.destroy();
      await postgres.query(`drop database "${name}" with (force)`);
    }
  });

  it("never hands one job to two claimers: 16 claimers on two pools take 300 jobs at once", async () => {
    const url = await postgres.createDatabase("hodei_claims");
    const pool = { size: 8, connectTimeoutMs: 5000, statementTimeoutMs: 30_000 };
    const a = await openDatabase(url, { pool });
    const b = await openDatabase(url, { pool });
    const stores = [new Store(a.db, a.kind), new Store(b.db, b.kind)];
    try {
      const clock = new ManualClock();
      for (let i = 0; i < 300; i++) await stores[i % 2].jobs.insert(`job-${String(i).padStart(4, "0")}`, spec(), clock.nowMs());
      let inFlight = 0;
      let maxInFlight = 0;
      let workers = 0;
      const claimer = async (store: Store) => {
        const got: string[] = [];
        for (;;) {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          const claimed = await claimOne(store, "local", clock.nowMs(), (job) => {
            const id = `worker-${++workers}`;
            return {
              worker: { id, name: workerName(id), jobId: job.id, attempt: job.attempts, provider: "local", registrationDeadlineMs: clock.nowMs() + 30_000 },
              token: { id: `token-${id}`, tokenHash: `hash-${id}`, expiresAtMs: clock.nowMs() + 30_000 },
            };
          }).finally(() => inFlight--);
          if (!claimed) return got;
          got.push(claimed.job.id);
        }
      };
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) => claimer(stores[i % 2])));
      const all = results.flat();
      assert.equal(all.length, 300, "every job was claimed");
      assert.equal(new Set(all).size, 300, "no job was claimed twice");
      assert.ok(maxInFlight > 8, `claims overlapped (at most ${maxInFlight} in flight)`);
      assert.ok(results.filter((r) => r.length > 0).length >= 8, "the claims spread over the claimers");
      assert.equal(await stores[0].countRows("workers"), 300, "one worker row per claimed job");
    } finally {
      for (const s of stores) await s.close();
      await postgres.drop(url);
    }
  });
});
