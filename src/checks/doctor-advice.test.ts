import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type AdviceInput, doctorAdvice, workerUrlSetting } from "./doctor-advice.js";

const base: AdviceInput = { provider: "docker", apiOk: true, detail: "docker 27.1", workerServerUrl: "http://172.17.0.1:7070", reason: "" };
const advise = (over: Partial<AdviceInput>) => doctorAdvice({ ...base, ...over });

describe("doctorAdvice", () => {
  it("says nothing when nothing failed", () => {
    assert.equal(advise({}), "");
  });

  it("passes an unhealthy provider's detail on as it is", () => {
    const detail = "cannot reach the Docker daemon at /var/run/docker.sock: connect ENOENT";
    assert.equal(advise({ apiOk: false, detail, reason: "anything" }), detail);
  });

  it("points kubernetes pods that cannot resolve host.docker.internal at the Service's DNS name", () => {
    const advice = advise({
      provider: "kubernetes",
      workerServerUrl: "http://host.docker.internal:7070",
      reason: "the worker did not register within 60s; its last output: cannot resolve the control plane's host in http://host.docker.internal:7070: getaddrinfo ENOTFOUND host.docker.internal",
    });
    assert.equal(
      advice,
      "pods cannot resolve host.docker.internal; set HODEI_K8S_WORKER_SERVER_URL to an address pods can reach (the Service's DNS name, e.g. http://hodei.<namespace>.svc:7070)",
    );
    assert.match(advise({ provider: "kubernetes", workerServerUrl: "http://host.docker.internal:7070", reason: "getaddrinfo EAI_AGAIN host.docker.internal" }), /^pods cannot resolve host\.docker\.internal/);
  });

  it("names the unresolved host and the provider's own setting for other DNS failures", () => {
    assert.equal(
      advise({ provider: "kubernetes", workerServerUrl: "http://hodei.internal:7070", reason: "getaddrinfo ENOTFOUND hodei.internal" }),
      "workers cannot resolve hodei.internal; set HODEI_K8S_WORKER_SERVER_URL to an address they can reach",
    );
    assert.equal(
      advise({ provider: "docker", workerServerUrl: "http://myhost:7070", reason: "register failed: getaddrinfo EAI_AGAIN myhost" }),
      "workers cannot resolve myhost; set HODEI_DOCKER_WORKER_SERVER_URL to an address they can reach",
    );
    // Without a host in the reason, the URL's host is named.
    assert.equal(
      advise({ provider: "local", workerServerUrl: "http://ctl.example:7070", reason: "cannot resolve the control plane's host" }),
      "workers cannot resolve ctl.example; set HODEI_LOCAL_WORKER_SERVER_URL to an address they can reach",
    );
  });

  it("says the URL is unreachable for a registration deadline or a refused connection", () => {
    const expected = "workers cannot reach http://127.0.0.1:9; check HODEI_DOCKER_WORKER_SERVER_URL and that the port is open to them";
    assert.equal(
      advise({ workerServerUrl: "http://127.0.0.1:9", reason: "the worker did not register within 5s (it could not reach the control plane at its worker-facing URL, or failed to start)" }),
      expected,
    );
    assert.equal(advise({ workerServerUrl: "http://127.0.0.1:9", reason: "register with http://127.0.0.1:9 failed: connect ECONNREFUSED 127.0.0.1:9" }), expected);
  });

  it("says to build or pull the image when it is missing", () => {
    const expected = "build or pull the worker image (npx hodei image build for docker)";
    assert.equal(advise({ reason: 'image hodei-worker:latest not found; run "npx hodei image build"' }), expected);
    assert.equal(advise({ provider: "kubernetes", reason: "pod hodei-worker-1 is waiting: ImagePullBackOff" }), expected);
    assert.equal(advise({ provider: "kubernetes", reason: "ErrImagePull: pull access denied" }), expected);
  });

  it("prefers the DNS advice when a registration deadline's output shows a lookup failure", () => {
    assert.match(advise({ reason: "the worker did not register within 60s; its last output: getaddrinfo ENOTFOUND nowhere" }), /^workers cannot resolve nowhere;/);
  });

  it("has nothing specific to say about a command that failed on its own", () => {
    assert.equal(advise({ reason: "probe job failed with exit code 1" }), "");
  });
});

describe("workerUrlSetting", () => {
  it("uses K8S for kubernetes and the upper-cased name otherwise", () => {
    assert.equal(workerUrlSetting("kubernetes"), "HODEI_K8S_WORKER_SERVER_URL");
    assert.equal(workerUrlSetting("docker"), "HODEI_DOCKER_WORKER_SERVER_URL");
    assert.equal(workerUrlSetting("local"), "HODEI_LOCAL_WORKER_SERVER_URL");
  });
});
