// The settings this file's tests cover: retention (HODEI_RETENTION) and the cluster id override.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseServerConfig } from "./config.js";

describe("HODEI_RETENTION", () => {
  it("defaults to 7 days", () => {
    assert.equal(parseServerConfig({}).retentionMs, 7 * 86_400_000);
  });

  it("reads a number with a unit (s, m, h, d), and 0 for keeping everything", () => {
    const ms = (value: string) => parseServerConfig({ HODEI_RETENTION: value }).retentionMs;
    assert.equal(ms("7d"), 7 * 86_400_000);
    assert.equal(ms("12h"), 12 * 3_600_000);
    assert.equal(ms("30m"), 30 * 60_000);
    assert.equal(ms("1s"), 1000);
    assert.equal(ms("0"), 0);
  });

  it("refuses anything else with a message naming the variable and the expected form", () => {
    for (const bad of ["7", "7 days", "-1d", "1.5h", "1w", "", "99999d"]) {
      assert.throws(
        () => parseServerConfig({ HODEI_RETENTION: bad }),
        (err: Error) => /HODEI_RETENTION/.test(err.message) && /7d, 12h or 30m/.test(err.message),
        `"${bad}" is refused`,
      );
    }
  });
});

describe("HODEI_CLUSTER_ID", () => {
  it("is only an override: unset, the id is decided from the database once it is open", () => {
    assert.equal(parseServerConfig({}).clusterIdOverride, undefined);
    assert.equal(parseServerConfig({ HODEI_CLUSTER_ID: "prod-1" }).clusterIdOverride, "prod-1");
  });
});
