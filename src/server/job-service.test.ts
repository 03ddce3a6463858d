/** ListJobs' states filter: split, deduplicated, bounded, and never echoing a huge entry back. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidInputError } from "../core/errors.js";
import { parseStateFilter } from "./job-service.js";

describe("parseStateFilter", () => {
  it("splits on commas, trims and drops duplicates", () => {
    assert.deepEqual(parseStateFilter(["running, queued", "queued", "", "running"]), ["running", "queued"]);
  });

  it("refuses more than 32 entries, counted after splitting, naming the field", () => {
    assert.equal(parseStateFilter([Array(32).fill("queued").join(",")]).length, 1);
    for (const entries of [Array(33).fill("queued"), [Array(33).fill("queued").join(",")], ["a,b", ...Array(31).fill("c")]]) {
      assert.throws(() => parseStateFilter(entries), (err: unknown) => err instanceof InvalidInputError && err.field === "states" && /at most 32/.test(err.message));
    }
  });

  it("names an unknown state without echoing all of a huge one", () => {
    assert.throws(
      () => parseStateFilter(["x".repeat(10_000)]),
      (err: unknown) => err instanceof InvalidInputError && err.message.length < 300 && /unknown state "x{40}\.\.\."/.test(err.message),
    );
  });
});
