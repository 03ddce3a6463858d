/**
 * Hints between the control planes of one PostgreSQL database (see notifier.ts): NOTIFY to
 * publish (through the store's pool), LISTEN on one dedicated connection to receive.
 *
 * Invariants:
 *  - the listening connection is opened at the first subscribe and kept; when it drops (the
 *    server restarted, pg_terminate_backend, a network cut) it is reopened with backoff
 *    (100 ms doubling to 5 s), and the drop is logged; a lost listener never crashes the process;
 *  - after every reconnect each subscriber is fired once with "" (anything may have changed),
 *    since hints sent while it was away are lost;
 *  - a hint is only a hint: nothing here is retried, queued or acknowledged.
 */
import pg from "pg";
import { type Notifier, type NotifierLog, type NotifyChannel, NOTIFY_CHANNELS, Subscribers } from "./notifier.js";
import { type PostgresPoolOptions, redactDatabaseUrl } from "./database-url.js";
import { poolConfig } from "./postgres.js";

/** PostgreSQL channel names: one namespace per product in the database. */
const PG_CHANNEL: Record<NotifyChannel, string> = { reconcile: "hodei_reconcile", cancel: "hodei_cancel", logs: "hodei_logs" };
const BY_PG_CHANNEL = new Map(NOTIFY_CHANNELS.map((c) => [PG_CHANNEL[c], c]));
const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 5000;
/** How long close() waits for the database to end the listener's connection. */
const CLOSE_WAIT_MS = 2000;
/** The listener's application_name, so that operators (and tests) can find its connection. */
export const LISTENER_APPLICATION_NAME = "hodei-listener";

const silentLog: NotifierLog = { warn() {}, info() {} };

export class PgNotifier implements Notifier {
  private readonly subscribers = new Subscribers();
  private client: pg.Client | null = null;
  private isStarted = false;
  private isClosed = false;
  private retryMs = FIRST_RETRY_MS;
  private retryTimer: NodeJS.Timeout | null = null;
  private log: NotifierLog = silentLog;
  /** Resolves once the listener has connected for the first time (tests wait for it). */
  readonly listening: Promise<void>;
  private resolveListening!: () => void;

  constructor(
    private readonly url: string,
    private readonly options: PostgresPoolOptions,
    private readonly pool: pg.Pool,
  ) {
    this.listening = new Promise((resolve) => (this.resolveListening = resolve));
  }

  /** Where connection drops and reconnects are reported. */
  setLog(log: NotifierLog): void {
    this.log = log;
  }

  async publish(channel: NotifyChannel, payload: string): Promise<void> {
    await this.pool.query("select pg_notify($1, $2)", [PG_CHANNEL[channel], payload]);
  }

  subscribe(channel: NotifyChannel, fn: (payload: string) => void): () => void {
    const unsubscribe = this.subscribers.add(channel, fn);
    if (!this.isStarted) {
      this.isStarted = true;
      void this.connect(false);
    }
    return unsubscribe;
  }

  async close(): Promise<void> {
    this.isClosed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    if (!client) return;
    // end() waits for the database to close its side: a frozen one (a stopped process, a paused VM)
    // never does, and a server's shutdown must not wait for it.
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), CLOSE_WAIT_MS)));
    const isLate = await Promise.race([client.end().then(() => false, () => false), gaveUp]);
    clearTimeout(timer);
    // Not to keep the process up for a connection nobody will close (unref: in pg, not in its types).
    if (isLate) (client as unknown as { unref(): void }).unref();
  }

  private async connect(isReconnect: boolean): Promise<void> {
    if (this.isClosed) return;
    let client: pg.Client;
    try {
      // Reads the URL's TLS files again: one missing now fails this try, which is retried like a lost connection.
      // query_timeout stays: it bounds the LISTEN below (a database that logs in, then never answers).
      const { max: _max, statement_timeout: _s, idle_in_transaction_session_timeout: _i, ...config } = poolConfig(this.url, this.options);
      client = new pg.Client({ ...config, application_name: LISTENER_APPLICATION_NAME });
    } catch (err) {
      this.log.warn({ err, database: redactDatabaseUrl(this.url), retryMs: this.retryMs }, "database listener cannot connect; retrying");
      this.scheduleReconnect();
      return;
    }
    let hasDropped = false;
    const onDrop = (err?: Error) => {
      if (hasDropped) return;
      hasDropped = true;
      if (this.client === client) this.client = null;
      client.end().catch(() => {});
      if (this.isClosed) return;
      this.log.warn({ err, database: redactDatabaseUrl(this.url), retryMs: this.retryMs }, "database listener lost; reconnecting");
      this.scheduleReconnect();
    };
    client.on("error", onDrop);
    client.on("end", () => onDrop());
    client.on("notification", (msg) => {
      const channel = BY_PG_CHANNEL.get(msg.channel);
      if (channel) this.subscribers.deliver(channel, msg.payload ?? "");
    });
    try {
      await client.connect();
      await client.query(NOTIFY_CHANNELS.map((c) => `listen ${PG_CHANNEL[c]}`).join("; "));
    } catch (err) {
      onDrop(err as Error);
      return;
    }
    if (this.isClosed || hasDropped) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.retryMs = FIRST_RETRY_MS;
    this.resolveListening();
    if (isReconnect) {
      this.log.info({ database: redactDatabaseUrl(this.url) }, "database listener reconnected");
      // Hints sent while it was away are lost: everyone looks again.
      this.subscribers.deliverAll();
    }
  }

  private scheduleReconnect(): void {
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect(true);
    }, delay);
    this.retryTimer.unref();
  }
}
