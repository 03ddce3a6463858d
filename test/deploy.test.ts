/**
 * The Kubernetes manifests cannot be applied here; this checks their structure instead: every
 * object the control plane needs is there, consistent with the others, and workers are pointed at
 * the Service's DNS name (the seed's pods were given host.docker.internal and could not resolve it).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, it } from "node:test";
import { parseAllDocuments } from "yaml";
import { workerUrlWarning } from "../src/server/main.js";

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [key: string]: any };

const FILE = resolve(import.meta.dirname, "../deploy/kubernetes/hodei.yaml");
const docs = parseAllDocuments(readFileSync(FILE, "utf8")).map((d) => {
  assert.deepEqual(d.errors, [], "the YAML parses");
  return d.toJS() as Obj;
});
const one = (kind: string): Obj => {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0];
};

describe("deploy/kubernetes/hodei.yaml", () => {
  const namespace = one("Namespace").metadata.name;
  const deployment = one("Deployment");
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));

  it("puts every namespaced object in the one namespace", () => {
    for (const d of docs.filter((x) => x.kind !== "Namespace")) assert.equal(d.metadata.namespace, namespace, `${d.kind} ${d.metadata.name}`);
  });

  it("grants the service account exactly what the Kubernetes provider uses", () => {
    const role = one("Role");
    const rule = (resource: string) => role.rules.find((r: { resources: string[] }) => r.resources.includes(resource));
    assert.deepEqual([...rule("pods").verbs].sort(), ["create", "delete", "get", "list", "watch"]);
    assert.ok(rule("pods/log").verbs.includes("get"));
    assert.ok(rule("events").verbs.includes("list"));
    const binding = one("RoleBinding");
    assert.equal(binding.roleRef.kind, "Role");
    assert.equal(binding.roleRef.name, role.metadata.name);
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: one("ServiceAccount").metadata.name, namespace }]);
    assert.equal(pod.serviceAccountName, one("ServiceAccount").metadata.name);
  });

  it("runs the server with the Kubernetes provider, listening on all interfaces", () => {
    assert.deepEqual(container.args, ["server"]);
    assert.ok(env.HODEI_PROVIDERS.split(",").includes("kubernetes"));
    assert.equal(env.HODEI_HOST, "0.0.0.0");
    assert.equal(env.HODEI_K8S_NAMESPACE, namespace);
    assert.equal(container.readinessProbe.httpGet.path, "/readyz");
    assert.equal(container.livenessProbe.httpGet.path, "/healthz");
  });

  it("points workers at the Service's DNS name and port", () => {
    const service = one("Service");
    const url = new URL(env.HODEI_K8S_WORKER_SERVER_URL);
    assert.ok(url.hostname.startsWith(`${service.metadata.name}.${namespace}.svc`), `${url.hostname} is the Service's DNS name`);
    const port = service.spec.ports.find((p: { name: string }) => p.name === "api");
    assert.equal(Number(url.port), port.port);
    assert.equal(String(env.HODEI_PORT), String(container.ports.find((p: { name: string }) => p.name === port.targetPort).containerPort));
    assert.equal(workerUrlWarning("kubernetes", url.toString()), "", "the server raises no warning for it");
  });

  it("selects the Deployment's pods from the Service", () => {
    const service = one("Service");
    const labels = deployment.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v);
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) assert.equal(labels[k], v);
  });

  it("keeps the embedded database on a volume", () => {
    const claim = one("PersistentVolumeClaim");
    const volume = pod.volumes.find((v: { persistentVolumeClaim?: { claimName: string } }) => v.persistentVolumeClaim?.claimName === claim.metadata.name);
    assert.ok(volume);
    const mount = container.volumeMounts.find((m: { name: string }) => m.name === volume.name);
    assert.equal(mount.mountPath, env.HODEI_DATA_DIR);
  });
});

describe("worker-facing URL warnings", () => {
  it("warns about host.docker.internal and loopback on Kubernetes, not elsewhere", () => {
    assert.match(workerUrlWarning("kubernetes", "http://host.docker.internal:7070"), /cannot resolve host\.docker\.internal; set HODEI_K8S_WORKER_SERVER_URL/);
    assert.match(workerUrlWarning("kubernetes", "http://127.0.0.1:7070"), /loopback/);
    assert.equal(workerUrlWarning("docker", "http://127.0.0.1:7070"), "");
    assert.equal(workerUrlWarning("kubernetes", "http://hodei.hodei.svc:7070"), "");
  });
});
