/**
 * `hodei run`'s resource options: cores as thousandths, MiB as given, pull policies, node selector
 * pairs and kubectl-style tolerations; anything else is refused with what to type instead.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError } from "commander";
import { collectNodeSelector, collectToleration, parseCpuCores, parseMemoryMb, parsePullPolicy } from "./resource-options.js";

describe("hodei run resource options", () => {
  it("--cpu takes cores, fractional, as thousandths of a core", () => {
    assert.equal(parseCpuCores("0.5"), 500);
    assert.equal(parseCpuCores("2"), 2000);
    assert.equal(parseCpuCores(".25"), 250);
    assert.equal(parseCpuCores("1.125"), 1125);
    for (const bad of ["0", "-1", "half", "0.0005", "1e3", ""]) assert.throws(() => parseCpuCores(bad), InvalidArgumentError, bad);
  });

  it("--memory takes whole MiB", () => {
    assert.equal(parseMemoryMb("512"), 512);
    for (const bad of ["0", "512Mi", "1.5", "-2"]) assert.throws(() => parseMemoryMb(bad), /whole number of MiB/, bad);
  });

  it("--pull takes always, if-not-present or never", () => {
    assert.equal(parsePullPolicy("never"), "never");
    assert.throws(() => parsePullPolicy("Always"), /always, if-not-present, never/);
  });

  it("--node-selector collects KEY=VALUE pairs", () => {
    assert.deepEqual(collectNodeSelector("b=2", collectNodeSelector("a=1", undefined)), { a: "1", b: "2" });
    assert.throws(() => collectNodeSelector("=x", undefined), /KEY=VALUE/);
  });

  it("--toleration reads kubectl's taint syntax", () => {
    assert.deepEqual(collectToleration("dedicated=hodei:NoSchedule", undefined), [{ key: "dedicated", operator: "Equal", value: "hodei", effect: "NoSchedule" }]);
    assert.deepEqual(collectToleration("gpu:NoSchedule", undefined), [{ key: "gpu", operator: "Exists", value: "", effect: "NoSchedule" }]);
    assert.deepEqual(collectToleration("spot:NoExecute:300", undefined), [{ key: "spot", operator: "Exists", value: "", effect: "NoExecute", tolerationSeconds: 300n }]);
    assert.deepEqual(collectToleration("zone=a", undefined), [{ key: "zone", operator: "Equal", value: "a", effect: "" }]);
    assert.deepEqual(collectToleration("*", undefined), [{ key: "", operator: "Exists", value: "", effect: "" }]);
    for (const bad of ["", ":NoSchedule", "a:Sometimes", "a:NoSchedule:30", "a:NoExecute:x", "a:b:c:d"]) assert.throws(() => collectToleration(bad, undefined), InvalidArgumentError, bad);
  });
});
