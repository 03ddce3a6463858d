/** The replica tests (replica-tests.ts) on one SQLite file in the replicas' shared data directory. */
import { join } from "node:path";
import { describe } from "node:test";
import { replicaTests } from "./replica-tests.js";

describe("replicas on one SQLite file", { concurrency: false }, () => {
  replicaTests(async (dataDir) => `sqlite:${join(dataDir, "hodei.db")}`);
});
