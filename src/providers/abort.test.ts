/**
 * A hung Docker daemon or Kubernetes API server (it accepts the connection and never answers) must
 * not keep provider calls in flight: each call takes an AbortSignal and gives up when it fires.
 * The servers here are real sockets that read requests and never reply.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { DockerProvider } from "./docker.js";
import { KubernetesProvider } from "./kubernetes.js";
import type { WorkerProvider } from "./provider.js";
import { workerSpec } from "./provider.contract.js";

/** A server that accepts connections, reads everything, answers nothing. */
class SilentServer {
  readonly sockets = new Set<Socket>();
  requests = 0;
  private readonly server: Server = createServer((socket) => {
    this.sockets.add(socket);
    socket.on("data", () => this.requests++);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {});
  });

  listen(target: string | number): Promise<void> {
    return new Promise((resolve) => this.server.listen(target as never, "127.0.0.1" as never, () => resolve()));
  }

  listenPath(path: string): Promise<void> {
    return new Promise((resolve) => this.server.listen(path, () => resolve()));
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  /** Resolves once every connection a client opened has been closed by that client. */
  async clientsGone(): Promise<void> {
    while (this.sockets.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function expectAborted(call: (signal: AbortSignal) => Promise<unknown>, server: SilentServer): Promise<void> {
  const controller = new AbortController();
  const before = server.requests;
  const pending = call(controller.signal);
  while (server.requests === before) await new Promise((resolve) => setTimeout(resolve, 5)); // the request reached the server
  controller.abort(new Error("time limit"));
  await assert.rejects(pending);
  await server.clientsGone(); // the aborted request's connection is closed, not left open
}

function describeHung(name: string, make: (server: SilentServer) => Promise<{ provider: WorkerProvider; cleanup(): void }>) {
  describe(`${name} against a server that never answers`, () => {
    let server: SilentServer;
    let provider: WorkerProvider;
    let cleanup = () => {};

    before(async () => {
      server = new SilentServer();
      ({ provider, cleanup } = await make(server));
    });

    after(async () => {
      await provider.close();
      await server.close();
      cleanup();
    });

    it("aborts list()", () => expectAborted((signal) => provider.list(signal), server));
    it("aborts inspect()", () => expectAborted((signal) => provider.inspect("some-worker", signal), server));
    it("aborts stop()", () => expectAborted((signal) => provider.stop("some-worker", 1000, signal), server));
    it("aborts start()", () => expectAborted((signal) => provider.start(workerSpec(), signal), server));
  });
}

describeHung("DockerProvider", async (server) => {
  const dir = mkdtempSync(join(tmpdir(), "hodei-hung-docker-"));
  const socketPath = join(dir, "docker.sock");
  await server.listenPath(socketPath);
  const provider = new DockerProvider({ clusterId: "hung", socketPath, defaultImage: "hodei-worker:latest", networkMode: "host", runtimeDir: dir, agentEnv: {} });
  return { provider, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
});

describeHung("KubernetesProvider", async (server) => {
  await server.listen(0);
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: "hung", server: `http://127.0.0.1:${server.port}`, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "hung", cluster: "hung", user: "u" }],
    currentContext: "hung",
  });
  const provider = new KubernetesProvider({
    clusterId: "hung",
    kubeConfig,
    namespace: "default",
    defaultImage: "hodei-worker:latest",
    imagePullSecrets: [],
    nodeSelector: {},
    tolerations: [],
    agentEnv: {},
  });
  return { provider, cleanup: () => {} };
});
