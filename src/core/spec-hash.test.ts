import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { validateJobSpec } from "./job-spec.js";
import { specHash } from "./spec-hash.js";

const DEFAULTS = { provider: "local", timeoutSeconds: 3600, providers: ["local", "docker"] };
const spec = (input: Parameters<typeof validateJobSpec>[0]) => validateJobSpec(input, DEFAULTS);

describe("specHash", () => {
  it("is the same for the same spec, whatever the order of its env and labels", () => {
    const a = spec({ command: ["echo", "hi"], env: { A: "1", B: "2" }, labels: { x: "1", y: "2" } });
    const b = spec({ command: ["echo", "hi"], env: { B: "2", A: "1" }, labels: { y: "2", x: "1" } });
    assert.equal(specHash(a), specHash(b));
    assert.match(specHash(a), /^[0-9a-f]{64}$/);
  });

  it("treats a default left out and the same default given as the same spec", () => {
    assert.equal(specHash(spec({ command: ["true"] })), specHash(spec({ command: ["true"], provider: "local", timeoutSeconds: 3600, maxAttempts: 1 })));
  });

  it("leaves the idempotency key out", () => {
    assert.equal(specHash(spec({ command: ["true"], idempotencyKey: "a" })), specHash(spec({ command: ["true"], idempotencyKey: "b" })));
  });

  it("differs when anything the job would do differs", () => {
    const base = specHash(spec({ command: ["echo", "hi"] }));
    for (const other of [
      { command: ["echo", "ho"] },
      { command: ["echo hi"] },
      { command: ["echo", "hi"], env: { A: "1" } },
      { command: ["echo", "hi"], labels: { team: "a" } },
      { command: ["echo", "hi"], priority: 1 },
      { command: ["echo", "hi"], delaySeconds: 60 },
      { command: ["echo", "hi"], provider: "docker" },
    ]) {
      assert.notEqual(specHash(spec(other)), base, JSON.stringify(other));
    }
  });

  it("does not confuse strings that only differ in how they would be joined", () => {
    assert.notEqual(specHash(spec({ command: ["a,b"] })), specHash(spec({ command: ["a", "b"] })));
    assert.notEqual(specHash(spec({ command: ["x"], env: { A: "1,B" } })), specHash(spec({ command: ["x"], env: { A: "1", B: "" } })));
  });
});
