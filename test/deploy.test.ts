/**
 * The Kubernetes manifests cannot be applied here; this checks their structure instead: every
 * object the control plane needs is there, consistent with the others, and workers are pointed at
 * the worker Service's DNS name (the seed's pods were given host.docker.internal and could not
 * resolve it). Then the split of the two APIs: two Services on two ports, NetworkPolicies that let
 * worker pods reach only the worker port and client namespaces only the client port, the admin key
 * from a Secret, and RBAC for the per-pod token Secrets.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, it } from "node:test";
import { parseAllDocuments } from "yaml";
import { parseServerConfig } from "../src/config.js";
import { POD_LABELS } from "../src/providers/kubernetes.js";
import { workerUrlWarning } from "../src/server/main.js";
import { type Endpoint, matches, mayConnect, type NetworkPolicy } from "./fixtures/network-policy.js";

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [key: string]: any };

const FILE = resolve(import.meta.dirname, "../deploy/kubernetes/hodei.yaml");
const TEXT = readFileSync(FILE, "utf8");
const docs = parseAllDocuments(TEXT).map((d) => {
  assert.deepEqual(d.errors, [], "the YAML parses");
  return d.toJS() as Obj;
});
const one = (kind: string): Obj => {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0];
};
const named = (kind: string, name: string): Obj => {
  const found = docs.find((d) => d.kind === kind && d.metadata.name === name);
  assert.ok(found, `${kind} ${name}`);
  return found;
};

describe("deploy/kubernetes/hodei.yaml", () => {
  const namespace = one("Namespace").metadata.name;
  const deployment = one("Deployment");
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));
  const clientService = named("Service", "hodei");
  const workerService = named("Service", "hodei-workers");
  const containerPort = (name: string): number => container.ports.find((p: { name: string }) => p.name === name).containerPort;

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

  it("points workers at the worker Service's DNS name and port", () => {
    const url = new URL(env.HODEI_K8S_WORKER_SERVER_URL);
    assert.ok(url.hostname.startsWith(`${workerService.metadata.name}.${namespace}.svc`), `${url.hostname} is the worker Service's DNS name`);
    const port = workerService.spec.ports.find((p: { name: string }) => p.name === "worker");
    assert.equal(Number(url.port), port.port);
    assert.equal(String(env.HODEI_WORKER_PORT), String(containerPort(port.targetPort)));
    assert.equal(workerUrlWarning("kubernetes", url.toString()), "", "the server raises no warning for it");
  });

  it("selects the Deployment's pods from both Services", () => {
    const labels = deployment.spec.template.metadata.labels;
    for (const service of [clientService, workerService]) {
      for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v, `${service.metadata.name} selects ${k}`);
    }
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) assert.equal(labels[k], v);
  });

  it("runs two replicas on PostgreSQL from a Secret, with one secret key, a PodDisruptionBudget and readiness on /readyz", () => {
    assert.equal(deployment.spec.replicas, 2);
    const fromSecret = (name: string) => container.env.find((e: { name: string }) => e.name === name)?.valueFrom?.secretKeyRef;
    assert.deepEqual(fromSecret("HODEI_DATABASE_URL"), { name: "hodei-database", key: "url" });
    assert.deepEqual(fromSecret("HODEI_SECRET_KEY"), { name: "hodei-secret-key", key: "key" });
    assert.match(TEXT, /create secret generic hodei-database --from-literal=url="postgres:\/\//, "the file says how to create it");
    assert.equal(docs.filter((d) => d.kind === "PersistentVolumeClaim").length, 0, "no volume one replica would hold");
    const budget = one("PodDisruptionBudget");
    assert.equal(budget.spec.minAvailable, 1);
    for (const [k, v] of Object.entries(budget.spec.selector.matchLabels)) assert.equal(deployment.spec.template.metadata.labels[k], v);
    assert.equal(container.readinessProbe.httpGet.path, "/readyz");
    const mount = container.volumeMounts.find((m: { name: string }) => m.name === "data");
    assert.equal(mount.mountPath, env.HODEI_DATA_DIR);
  });

  describe("the client API and the worker API apart", () => {
    const policies = docs.filter((d) => d.kind === "NetworkPolicy") as unknown as NetworkPolicy[];
    const namespaceLabels = { "kubernetes.io/metadata.name": namespace };
    const controlPlane: Endpoint = { pod: { namespace, labels: deployment.spec.template.metadata.labels, namespaceLabels } };
    /** The labels of a worker pod, as the Kubernetes provider sets them. */
    const workerLabels = {
      [POD_LABELS.managedBy]: "hodei",
      [POD_LABELS.clusterId]: "c0ffee",
      [POD_LABELS.jobId]: "j1",
      [POD_LABELS.attempt]: "1",
      [POD_LABELS.workerId]: "w1",
    };
    const worker: Endpoint = { pod: { namespace: env.HODEI_K8S_NAMESPACE, namespaceLabels, labels: workerLabels } };
    const podIn = (ns: string, nsLabels: Record<string, string>, labels: Record<string, string> = { app: "x" }): Endpoint => ({
      pod: { namespace: ns, labels, namespaceLabels: { "kubernetes.io/metadata.name": ns, ...nsLabels } },
    });
    const client = podIn("team-a", { "hodei.io/client": "true" });
    const stranger = podIn("team-b", {});
    const neighbour = podIn(namespace, {}, { app: "something-else" });
    const dns = podIn("kube-system", {}, { "k8s-app": "kube-dns" });
    const apiServer: Endpoint = { ip: "10.96.0.1" };
    const internet: Endpoint = { ip: "140.82.112.3" };
    const clientPort = Number(env.HODEI_PORT);
    const workerPort = Number(env.HODEI_WORKER_PORT);

    it("serves them as two Services on two ports of the control plane", () => {
      assert.deepEqual(
        docs.filter((d) => d.kind === "Service").map((d) => d.metadata.name).sort(),
        ["hodei", "hodei-workers"],
      );
      assert.equal(clientPort, 7070);
      assert.equal(workerPort, 7071);
      assert.deepEqual(clientService.spec.ports, [{ name: "api", port: clientPort, targetPort: "api" }]);
      assert.deepEqual(workerService.spec.ports, [{ name: "worker", port: workerPort, targetPort: "worker" }]);
      assert.equal(containerPort("api"), clientPort);
      assert.equal(containerPort("worker"), workerPort);
      assert.equal(container.readinessProbe.httpGet.port, "api", "health is on the client port");
      assert.equal(container.livenessProbe.httpGet.port, "api");
    });

    it("runs the Kubernetes provider only, with the worker port set and workers sent to it", () => {
      assert.equal(env.HODEI_PROVIDERS, "kubernetes", "no local provider in the cluster");
      assert.equal(env.HODEI_WORKER_PORT, "7071");
      const url = new URL(env.HODEI_K8S_WORKER_SERVER_URL);
      assert.equal(url.hostname, `${workerService.metadata.name}.${namespace}.svc.cluster.local`);
      assert.equal(Number(url.port), workerPort);
      const names = container.env.map((e: { name: string }) => e.name);
      assert.equal(new Set(names).size, names.length, "no variable twice");
      const config = parseServerConfig(env);
      assert.deepEqual(config.providers, ["kubernetes"]);
      assert.equal(config.port, clientPort);
      assert.equal(config.kubernetes.workerServerUrl, env.HODEI_K8S_WORKER_SERVER_URL);
      assert.equal(config.kubernetes.namespace, namespace);
    });

    it("selects the control plane and worker pods with its NetworkPolicies, in the workers' namespace", () => {
      assert.deepEqual(policies.map((p) => p.metadata.name).sort(), ["hodei-control-plane", "hodei-workers"]);
      const controlPolicy = policies.find((p) => p.metadata.name === "hodei-control-plane")!;
      const workerPolicy = policies.find((p) => p.metadata.name === "hodei-workers")!;
      assert.ok(matches(controlPolicy.spec.podSelector, deployment.spec.template.metadata.labels));
      assert.ok(!matches(controlPolicy.spec.podSelector, workerLabels));
      assert.ok(matches(workerPolicy.spec.podSelector, workerLabels));
      assert.ok(!matches(workerPolicy.spec.podSelector, deployment.spec.template.metadata.labels));
      for (const p of policies) {
        assert.equal(p.metadata.namespace, env.HODEI_K8S_NAMESPACE, `${p.metadata.name} is where worker pods run`);
        assert.deepEqual([...(p.spec.policyTypes ?? [])].sort(), ["Egress", "Ingress"], `${p.metadata.name} isolates both ways`);
      }
    });

    it("lets worker pods reach the worker port of the control plane and DNS, and nothing else", () => {
      assert.ok(mayConnect(policies, worker, controlPlane, workerPort));
      assert.ok(!mayConnect(policies, worker, controlPlane, clientPort), "not the client API");
      // Each side on its own keeps workers off the client port: the control plane's ingress even
      // if the workers' egress is opened (to the internet, say), and the workers' egress even if
      // the hodei namespace were labelled a client namespace.
      for (const alone of policies) assert.ok(!mayConnect([alone], worker, controlPlane, clientPort), `${alone.metadata.name} alone`);
      const workersAsClients: Endpoint = {
        pod: { namespace: env.HODEI_K8S_NAMESPACE, labels: workerLabels, namespaceLabels: { ...namespaceLabels, "hodei.io/client": "true" } },
      };
      assert.ok(!mayConnect(policies, workersAsClients, controlPlane, clientPort));
      assert.ok(mayConnect(policies, worker, dns, 53, "UDP"));
      assert.ok(mayConnect(policies, worker, dns, 53, "TCP"));
      for (const [what, to, port] of [
        ["another pod of the namespace", neighbour, 8080],
        ["another worker", worker, 8080],
        ["a client namespace's pod", client, 8080],
        ["the Kubernetes API", apiServer, 443],
        ["the internet", internet, 443],
      ] as const) {
        assert.ok(!mayConnect(policies, worker, to, port), `not ${what}`);
      }
      for (const from of [client, stranger, neighbour, controlPlane]) assert.ok(!mayConnect(policies, from, worker, 8080), "nothing reaches a worker pod");
    });

    it("lets only labelled client namespaces reach the client port, and them only that", () => {
      assert.ok(mayConnect(policies, client, controlPlane, clientPort));
      assert.ok(!mayConnect(policies, client, controlPlane, workerPort), "clients do not reach the worker port");
      for (const from of [stranger, neighbour]) {
        assert.ok(!mayConnect(policies, from, controlPlane, clientPort));
        assert.ok(!mayConnect(policies, from, controlPlane, workerPort));
      }
      assert.ok(!mayConnect(policies, worker, controlPlane, clientPort));
      assert.match(TEXT, /kubectl label namespace .* hodei\.io\/client=true/, "the file says how to label a client namespace");
    });

    it("lets the control plane reach the Kubernetes API and DNS", () => {
      assert.ok(mayConnect(policies, controlPlane, apiServer, 443));
      assert.ok(mayConnect(policies, controlPlane, apiServer, 6443));
      assert.ok(mayConnect(policies, controlPlane, dns, 53, "UDP"));
      assert.ok(!mayConnect(policies, controlPlane, worker, 8080), "it never connects to workers");
    });

    it("takes the bootstrap admin key from the Secret hodei-admin-key the operator creates (HODEI_ADMIN_KEY_FILE)", () => {
      const volume = pod.volumes.find((v: { secret?: { secretName: string } }) => v.secret?.secretName === "hodei-admin-key");
      assert.ok(volume, "the Secret is a volume");
      assert.ok(!docs.some((d) => d.kind === "Secret"), "the manifest holds no Secret: applying it again never replaces the key");
      assert.deepEqual(volume.secret.items, [{ key: "key", path: "key" }]);
      assert.equal(volume.secret.defaultMode, 0o400);
      const mount = container.volumeMounts.find((m: { name: string }) => m.name === volume.name);
      assert.equal(mount.readOnly, true);
      assert.equal(env.HODEI_ADMIN_KEY_FILE, `${mount.mountPath}/key`);
      assert.ok(!mount.mountPath.startsWith(env.HODEI_DATA_DIR), "not on the data volume");
      assert.match(TEXT, /kubectl -n hodei create secret generic hodei-admin-key --from-literal=key=/, "the file says how to create it");
      assert.equal(env.HODEI_AUTH, "required");
    });

    it("grants create, get, list, patch and delete on Secrets for the per-pod token Secrets, and nothing more on them", () => {
      const role = one("Role");
      const onSecrets = role.rules.filter((r: { resources: string[] }) => r.resources.includes("secrets") || r.resources.includes("*"));
      assert.equal(onSecrets.length, 1);
      assert.deepEqual(onSecrets[0].apiGroups, [""]);
      assert.deepEqual(onSecrets[0].resources, ["secrets"]);
      assert.deepEqual([...onSecrets[0].verbs].sort(), ["create", "delete", "get", "list", "patch"]);
      assert.ok(!role.rules.some((r: { verbs: string[] }) => r.verbs.includes("*")), "no wildcard verb");
      assert.ok(!docs.some((d) => d.kind === "ClusterRole" || d.kind === "ClusterRoleBinding"), "nothing outside the namespace");
    });
  });
});

describe("the NetworkPolicy reading these tests use", () => {
  const pod = (labels: Record<string, string>, namespace = "n", namespaceLabels: Record<string, string> = {}): Endpoint => ({ pod: { namespace, labels, namespaceLabels } });
  const policy = (spec: NetworkPolicy["spec"]): NetworkPolicy => ({ metadata: { name: "p", namespace: "n" }, spec });

  it("isolates only the pods a policy selects, and then allows only its rules", () => {
    const denyAll = policy({ podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Ingress"], ingress: [] });
    assert.ok(!mayConnect([denyAll], pod({}), pod({ app: "db" }), 5432));
    assert.ok(mayConnect([denyAll], pod({}), pod({ app: "web" }), 80), "a pod no policy selects is open");
  });

  it("reads a peer with both selectors as one condition, and two peers as either", () => {
    const both = policy({
      podSelector: {},
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "a" } }, podSelector: { matchLabels: { role: "client" } } }] }],
    });
    const either = policy({
      podSelector: {},
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "a" } } }, { podSelector: { matchLabels: { role: "client" } } }] }],
    });
    const target = pod({});
    const otherPodInA = pod({ role: "other" }, "a", { team: "a" });
    assert.ok(!mayConnect([both], otherPodInA, target, 80));
    assert.ok(mayConnect([either], otherPodInA, target, 80));
    assert.ok(mayConnect([both], pod({ role: "client" }, "a", { team: "a" }), target, 80));
  });

  it("needs the source's egress and the destination's ingress, and checks ports and protocols", () => {
    const egress = policy({ podSelector: { matchLabels: { app: "w" } }, policyTypes: ["Egress"], egress: [{ ports: [{ protocol: "UDP", port: 53 }] }] });
    assert.ok(mayConnect([egress], pod({ app: "w" }), pod({}), 53, "UDP"));
    assert.ok(!mayConnect([egress], pod({ app: "w" }), pod({}), 53, "TCP"));
    assert.ok(!mayConnect([egress], pod({ app: "w" }), { ip: "1.1.1.1" }, 443));
    const block = policy({ podSelector: {}, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8"] } }] }] });
    assert.ok(mayConnect([block], pod({}), { ip: "140.82.112.3" }, 443));
    assert.ok(!mayConnect([block], pod({}), { ip: "10.96.0.1" }, 443));
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
