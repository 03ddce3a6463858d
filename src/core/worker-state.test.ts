import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ACTIVE_WORKER_STATES,
  canTransitionWorker,
  LIVE_WORKER_STATES,
  WORKER_STATES,
  type WorkerState,
  workerStatesLeadingTo,
} from "./worker-state.js";

// The legal transitions, written out independently of worker-state.ts.
const LEGAL: Record<WorkerState, WorkerState[]> = {
  provisioning: ["waiting", "destroying"],
  waiting: ["registered", "destroying"],
  registered: ["running", "destroying"],
  running: ["destroying"],
  destroying: ["destroyed"],
  destroyed: [],
};

describe("worker state machine", () => {
  it("knows exactly the six worker states, in lifecycle order", () => {
    assert.deepEqual([...WORKER_STATES], ["provisioning", "waiting", "registered", "running", "destroying", "destroyed"]);
  });

  it("allows exactly the transitions of the diagram", () => {
    for (const from of WORKER_STATES) {
      for (const to of WORKER_STATES) {
        assert.equal(canTransitionWorker(from, to), LEGAL[from].includes(to), `${from} -> ${to}`);
      }
    }
  });

  it("only moves forward: no state is ever re-entered", () => {
    for (const from of WORKER_STATES) {
      for (const to of WORKER_STATES) {
        if (WORKER_STATES.indexOf(to) <= WORKER_STATES.indexOf(from)) {
          assert.equal(canTransitionWorker(from, to), false, `${from} -> ${to}`);
        }
      }
    }
  });

  it("cannot skip registration: a worker runs a job only after it registered", () => {
    assert.equal(canTransitionWorker("provisioning", "registered"), false);
    assert.equal(canTransitionWorker("provisioning", "running"), false);
    assert.equal(canTransitionWorker("waiting", "running"), false);
  });

  it("can be sent to destroying from every state in which it still works on its attempt", () => {
    for (const state of ACTIVE_WORKER_STATES) assert.equal(canTransitionWorker(state, "destroying"), true, state);
  });

  it("reaches destroyed only through destroying, and destroyed is terminal", () => {
    assert.deepEqual(workerStatesLeadingTo("destroyed"), ["destroying"]);
    for (const to of WORKER_STATES) assert.equal(canTransitionWorker("destroyed", to), false, `destroyed -> ${to}`);
  });

  it("counts every state but destroyed as live, and destroying as live but not active", () => {
    assert.deepEqual([...LIVE_WORKER_STATES], ["provisioning", "waiting", "registered", "running", "destroying"]);
    assert.deepEqual([...ACTIVE_WORKER_STATES], ["provisioning", "waiting", "registered", "running"]);
  });
});

describe("workerStatesLeadingTo", () => {
  it("gives the guard of every worker update", () => {
    assert.deepEqual(workerStatesLeadingTo("provisioning"), []);
    assert.deepEqual(workerStatesLeadingTo("waiting"), ["provisioning"]);
    assert.deepEqual(workerStatesLeadingTo("registered"), ["waiting"]);
    assert.deepEqual(workerStatesLeadingTo("running"), ["registered"]);
    assert.deepEqual(workerStatesLeadingTo("destroying"), ["provisioning", "waiting", "registered", "running"]);
    assert.deepEqual(workerStatesLeadingTo("destroyed"), ["destroying"]);
  });

  it("agrees with canTransitionWorker for every pair", () => {
    for (const to of WORKER_STATES) {
      for (const from of WORKER_STATES) {
        assert.equal(workerStatesLeadingTo(to).includes(from), canTransitionWorker(from, to), `${from} -> ${to}`);
      }
    }
  });
});
