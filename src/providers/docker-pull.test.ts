/**
 * Which failed pulls a retry can help, and a container the kernel killed for memory: pure, no daemon.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type Dockerode from "dockerode";
import { PermanentError, UnavailableError } from "../core/errors.js";
import { DockerProvider } from "./docker.js";
import { pullError } from "./docker-pull.js";

describe("a failed pull", () => {
  it("is retried (not permanent) when the registry did not answer: refused, reset, timed out, rate-limited, 5xx", () => {
    for (const message of [
      'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
      'Get "https://registry.example/v2/": net/http: TLS handshake timeout',
      "toomanyrequests: You have reached your pull rate limit",
      "received unexpected HTTP status: 503 Service Unavailable",
      "read tcp 10.0.0.1:4242->10.0.0.2:443: read: connection reset by peer",
    ]) {
      const err = pullError("img:1", Object.assign(new Error(`(HTTP code 500) server error - ${message}`), { json: { message } }));
      assert.equal(err instanceof PermanentError, false, message);
      assert.equal(err.message, `docker: pull img:1 failed: ${message} (the registry did not answer; the attempt is retried while the job has attempts left)`);
    }
  });

  it("is permanent when the same pull would fail again: no such image, access denied, a name that does not resolve", () => {
    for (const message of [
      "pull access denied for nope, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
      "manifest for alpine:nope not found: manifest unknown: manifest unknown",
      'Get "https://registy.example/v2/": dial tcp: lookup registy.example on 10.0.0.53:53: no such host',
    ]) {
      const err = pullError("img:1", Object.assign(new Error("(HTTP code 404) unexpected"), { json: { message } }));
      assert.ok(err instanceof PermanentError, message);
      assert.equal(err.message, `docker: pull img:1 failed: ${message}`);
    }
  });

  it("is the provider being unavailable when the daemon itself does not answer", () => {
    const err = pullError("img:1", Object.assign(new Error("connect ECONNREFUSED /var/run/docker.sock"), { code: "ECONNREFUSED" }));
    assert.ok(err instanceof UnavailableError);
  });
});

describe("a container killed for memory", () => {
  it("is reported OOMKilled, permanent (the same job in the same memory would be killed again)", async () => {
    const fakeDocker = { getContainer: () => ({ inspect: async () => ({ State: { Running: false, Restarting: false, Status: "exited", OOMKilled: true, ExitCode: 137 } }) }) } as unknown as Dockerode;
    const provider = new DockerProvider({ clusterId: "c", socketPath: "/nowhere", defaultImage: "hodei-worker:latest", networkMode: "host", runtimeDir: "/nowhere", agentEnv: {}, docker: fakeDocker });
    assert.deepEqual(await provider.inspect("a".repeat(64)), {
      state: "exited",
      exitCode: 137,
      reason: "was killed for running out of memory (OOMKilled: the job needs more than its memory limit)",
      permanent: true,
    });
  });
});
