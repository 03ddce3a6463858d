/** What both Connect services (client API and worker protocol) are built from. */
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { SecretBox } from "../core/secret-box.js";
import type { Metrics } from "../metrics.js";
import type { Reconciler } from "../scheduler/reconciler.js";
import type { Store } from "../store/store.js";
import type { LogHub } from "./log-hub.js";
import type { SessionRegistry } from "./worker-service.js";

export interface ServiceDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  reconciler: Reconciler;
  logHub: LogHub;
  /** Streams connected to this process: how a cancel reaches an agent at once. */
  sessions: SessionRegistry;
  /** Between SIGTERM and SIGKILL when a job's process tree is stopped, ms. */
  stopGraceMs: number;
  /** Seals job secrets at submit and opens them at dispatch (the server's secret key). */
  secretBox: SecretBox;
}
