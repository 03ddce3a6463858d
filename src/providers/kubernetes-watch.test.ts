/**
 * PodWatch against an API server (a fake on loopback) that accepts a watch and does not answer: the
 * watch is given up after its connect limit and tried again, and a late answer to the one given up
 * is closed. No cluster or emulator needed.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { describe, it } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { PodWatch } from "./kubernetes-watch.js";

const until = async (condition: () => boolean, timeoutMs = 5000) => {
  for (const deadline = Date.now() + timeoutMs; !condition() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
};

describe("PodWatch: an API server that does not answer", () => {
  it("gives the watch up after its connect limit, tries again, and closes the late answer", async () => {
    const pending: { res: http.ServerResponse; closed: boolean }[] = [];
    const server = http.createServer((req, res) => {
      const entry = { res, closed: false };
      req.socket.on("close", () => (entry.closed = true));
      pending.push(entry); // no answer
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name: "fake", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "nobody" }],
      contexts: [{ name: "fake", cluster: "fake", user: "nobody" }],
      currentContext: "fake",
    });
    const held: (() => void)[] = [];
    const watch = new PodWatch({ kubeConfig, namespace: "default", labelSelector: "a=b", onChange: () => {}, connectTimeoutMs: 300, schedule: (connect) => held.push(connect) });
    try {
      watch.ensure();
      await until(() => pending.length === 1);
      watch.ensure();
      assert.equal(watch.connections, 1, "a watch waiting for its answer is not doubled");
      await until(() => held.length === 1);
      assert.equal(held.length, 1, "the unanswered watch was given up and its retry scheduled");
      held[0]();
      await until(() => pending.length === 2);
      assert.equal(watch.connections, 2);
      // The first request's answer comes now, too late: it is closed rather than kept.
      pending[0].res.writeHead(200, { "content-type": "application/json" });
      pending[0].res.flushHeaders();
      await until(() => pending[0].closed);
      assert.equal(pending[0].closed, true, "the late answer's connection was closed");
      assert.equal(pending[1].closed, false, "the current watch goes on");
    } finally {
      watch.close();
      for (const p of pending) p.res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
