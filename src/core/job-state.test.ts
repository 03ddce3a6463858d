import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ACTIVE_JOB_STATES,
  canTransition,
  isJobState,
  isTerminal,
  JOB_STATES,
  type JobState,
  jobStatesLeadingTo,
  TERMINAL_JOB_STATES,
} from "./job-state.js";

// The legal transitions, written out independently of job-state.ts (the architecture's diagram):
// adding or removing a transition there must be a deliberate change here too.
const LEGAL: Record<JobState, JobState[]> = {
  queued: ["provisioning", "canceled", "failed", "timed_out"],
  provisioning: ["running", "queued", "failed", "canceled", "timed_out"],
  running: ["succeeded", "failed", "canceled", "timed_out", "queued"],
  succeeded: [],
  failed: [],
  canceled: [],
  timed_out: [],
};

describe("job state machine", () => {
  it("knows exactly the seven job states", () => {
    assert.deepEqual([...JOB_STATES].sort(), Object.keys(LEGAL).sort());
    assert.equal(isJobState("queued"), true);
    assert.equal(isJobState("timed_out"), true);
    assert.equal(isJobState("paused"), false);
    assert.equal(isJobState(""), false);
    assert.equal(isJobState("QUEUED"), false);
  });

  it("allows exactly the transitions of the diagram", () => {
    for (const from of JOB_STATES) {
      for (const to of JOB_STATES) {
        assert.equal(canTransition(from, to), LEGAL[from].includes(to), `${from} -> ${to}`);
      }
    }
  });

  it("lets a queued job be provisioned, canceled, failed or timed out (its queue timeout), and nothing else", () => {
    assert.equal(canTransition("queued", "provisioning"), true);
    assert.equal(canTransition("queued", "canceled"), true);
    assert.equal(canTransition("queued", "failed"), true);
    assert.equal(canTransition("queued", "timed_out"), true);
    assert.equal(canTransition("queued", "running"), false, "a job is never running without a worker");
    assert.equal(canTransition("queued", "succeeded"), false);
  });

  it("only succeeds from running", () => {
    assert.deepEqual(jobStatesLeadingTo("succeeded"), ["running"]);
    assert.equal(canTransition("provisioning", "succeeded"), false);
  });

  it("returns a lost attempt to the queue from provisioning or running (retry)", () => {
    assert.equal(canTransition("provisioning", "queued"), true);
    assert.equal(canTransition("running", "queued"), true);
  });

  it("never moves to the state it is already in", () => {
    for (const state of JOB_STATES) assert.equal(canTransition(state, state), false, state);
  });

  it("treats succeeded, failed, canceled and timed_out as terminal, with no way out", () => {
    assert.deepEqual([...TERMINAL_JOB_STATES].sort(), ["canceled", "failed", "succeeded", "timed_out"]);
    for (const state of JOB_STATES) {
      const terminal = ["succeeded", "failed", "canceled", "timed_out"].includes(state);
      assert.equal(isTerminal(state), terminal, state);
      if (terminal) for (const to of JOB_STATES) assert.equal(canTransition(state, to), false, `${state} -> ${to}`);
    }
  });

  it("counts provisioning and running as active, and no terminal state", () => {
    assert.deepEqual([...ACTIVE_JOB_STATES].sort(), ["provisioning", "running"]);
    for (const state of ACTIVE_JOB_STATES) assert.equal(isTerminal(state), false);
  });
});

describe("jobStatesLeadingTo", () => {
  it("gives the guard of every update: the states from which the transition is legal", () => {
    assert.deepEqual(jobStatesLeadingTo("queued"), ["provisioning", "running"]);
    assert.deepEqual(jobStatesLeadingTo("provisioning"), ["queued"]);
    assert.deepEqual(jobStatesLeadingTo("running"), ["provisioning"]);
    assert.deepEqual(jobStatesLeadingTo("succeeded"), ["running"]);
    assert.deepEqual(jobStatesLeadingTo("failed"), ["queued", "provisioning", "running"]);
    assert.deepEqual(jobStatesLeadingTo("canceled"), ["queued", "provisioning", "running"]);
    assert.deepEqual(jobStatesLeadingTo("timed_out"), ["queued", "provisioning", "running"]);
  });

  it("never includes a terminal state, so a finished job cannot be rewritten", () => {
    for (const to of JOB_STATES) {
      for (const from of jobStatesLeadingTo(to)) assert.equal(isTerminal(from), false, `${from} -> ${to}`);
    }
  });

  it("agrees with canTransition for every pair", () => {
    for (const to of JOB_STATES) {
      for (const from of JOB_STATES) {
        assert.equal(jobStatesLeadingTo(to).includes(from), canTransition(from, to), `${from} -> ${to}`);
      }
    }
  });
});
