/**
 * The CLI's protobuf descriptors decoded at build time (scripts/embedded-descriptors.mjs): every
 * file the generated code embeds (ours and protobuf's well-known types) gives the same
 * FileDescriptorProto and the same descriptors (messages, fields, enums, services) from the table's
 * literal as from protobuf-es's own decode; the comparison sees a field's presence (a literal that
 * lost a prototype would differ); a file the table lacks is decoded as before; and the built CLI
 * never decodes a descriptor at start.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, it } from "node:test";
import { type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { build } from "esbuild";
import { ROOT } from "./e2e/harness.js";
import { tempDir } from "./fixtures/temp-dir.js";
// @ts-expect-error: a plain JavaScript build script, without declarations
import { collectDescriptors, embeddedDescriptors, PROTOBUF_ESM, tableSource } from "../scripts/embedded-descriptors.mjs";

type Recorded = [string, DescFile][];
type Table = { EMBEDDED: Map<string, () => DescFile["proto"]>; fnv1a(text: string): number };
type Registry = { getFile(name: string): DescFile | undefined };

/** Every descriptor of a file, as plain data: what encoding, decoding and JSON read from them. */
function dump(file: DescFile): unknown {
  const field = (f: DescFile["messages"][number]["fields"][number]) => ({
    name: f.name,
    number: f.number,
    localName: f.localName,
    jsonName: f.jsonName,
    fieldKind: f.fieldKind,
    presence: f.presence,
    packed: "packed" in f ? f.packed : undefined,
    scalar: "scalar" in f ? f.scalar : undefined,
    mapKey: "mapKey" in f ? f.mapKey : undefined,
    listKind: "listKind" in f ? f.listKind : undefined,
    mapKind: "mapKind" in f ? f.mapKind : undefined,
    message: "message" in f ? f.message?.typeName : undefined,
    enum: "enum" in f ? f.enum?.typeName : undefined,
    oneof: f.oneof?.name,
    default: "getDefaultValue" in f && typeof f.getDefaultValue === "function" ? String(f.getDefaultValue()) : undefined,
    deprecated: f.deprecated,
  });
  const messages: unknown[] = [];
  const visit = (m: DescFile["messages"][number]) => {
    messages.push({ typeName: m.typeName, fields: m.fields.map(field), oneofs: m.oneofs.map((o) => [o.name, o.fields.map((f) => f.name)]) });
    m.nestedMessages.forEach(visit);
  };
  file.messages.forEach(visit);
  return {
    name: file.name,
    edition: file.edition,
    dependencies: file.dependencies.map((d) => d.name),
    messages,
    enums: file.enums.map((e) => ({ typeName: e.typeName, values: e.values.map((v) => [v.name, v.number, v.localName]) })),
    services: file.services.map((s) => ({ typeName: s.typeName, methods: s.methods.map((m) => [m.name, m.methodKind, m.input.typeName, m.output.typeName, m.idempotency]) })),
  };
}

async function loadTable(files: Recorded): Promise<Table> {
  const dir = tempDir("hodei-descriptors-test-");
  const path = join(dir, "table.mjs");
  writeFileSync(path, tableSource(files));
  return (await import(pathToFileURL(path).href)) as Table;
}

async function registryBuilder(): Promise<(proto: DescFile["proto"], imports: DescFile[]) => Registry> {
  const { createEmbeddedFileRegistry } = (await import(pathToFileURL(join(PROTOBUF_ESM, "registry.js")).href)) as {
    createEmbeddedFileRegistry(proto: DescFile["proto"], resolve: (name: string) => DescFile | undefined): Registry;
  };
  return (proto, imports) => createEmbeddedFileRegistry(proto, (name) => imports.find((f) => f.proto.name === name));
}

describe("descriptors decoded at build time", () => {
  it("give every embedded file the same FileDescriptorProto and descriptors as a decode, and the check sees a field's presence", async () => {
    // Ours and every well-known type: more than the CLI holds, the same way.
    const entry = `export * from "./src/gen/hodei/v1/api_pb.ts"; export * from "./src/gen/hodei/v1/worker_pb.ts"; export * from "@bufbuild/protobuf/wkt";`;
    const files = (await collectDescriptors(build, { stdin: { contents: entry, resolveDir: ROOT, loader: "ts" }, bundle: true, platform: "node", format: "esm" })) as Recorded;
    const names = files.map(([, f]) => f.proto.name);
    for (const name of ["hodei/v1/api.proto", "hodei/v1/worker.proto", "google/protobuf/timestamp.proto", "google/protobuf/struct.proto", "google/protobuf/any.proto"]) {
      assert.ok(names.includes(name), `${name} among the recorded files (${names.join(", ")})`);
    }
    const table = await loadTable(files);
    const registry = await registryBuilder();
    for (const [base64, decoded] of files) {
      const make = table.EMBEDDED.get(`${table.fnv1a(base64)}:${base64.length}`);
      assert.ok(make, `${decoded.proto.name} is in the table`);
      const root = make();
      const built = registry(root, decoded.dependencies).getFile(root.name)!;
      assert.deepEqual(toBinary(FileDescriptorProtoSchema, built.proto), toBinary(FileDescriptorProtoSchema, decoded.proto), `${root.name}: the same FileDescriptorProto`);
      assert.deepEqual(dump(built), dump(decoded), `${root.name}: the same descriptors`);
    }
    // A literal with a presence the decode did not have (oneof_index set on a field outside any
    // oneof) must not pass the same checks.
    const [base64, api] = files.find(([, f]) => f.proto.name === "hodei/v1/api.proto")!;
    const altered = table.EMBEDDED.get(`${table.fnv1a(base64)}:${base64.length}`)!();
    const plain = altered.messageType[0].field.find((f) => !Object.hasOwn(f, "oneofIndex"))!;
    plain.oneofIndex = 0;
    assert.notDeepEqual(toBinary(FileDescriptorProtoSchema, altered), toBinary(FileDescriptorProtoSchema, api.proto));
  });

  it("a bundle whose table lacks a file decodes it as before, and counts it", async () => {
    const dir = tempDir("hodei-descriptors-fallback-");
    const outfile = join(dir, "bundle.cjs");
    const entry = `import { create, toBinary, fromBinary } from "@bufbuild/protobuf"; import { JobSchema } from "./src/gen/hodei/v1/api_pb.ts";
      const bytes = toBinary(JobSchema, create(JobSchema, { id: "j1", command: ["echo", "hi"], exitCode: 0 }));
      const back = fromBinary(JobSchema, bytes);
      module.exports = { id: back.id, command: back.command, exitCode: back.exitCode, decoded: globalThis.__hodeiDescriptorsDecoded };`;
    await build({ stdin: { contents: entry, resolveDir: ROOT, loader: "ts" }, bundle: true, platform: "node", format: "cjs", outfile, logLevel: "warning", plugins: [embeddedDescriptors([])] });
    const run = spawnSync(process.execPath, ["-e", `process.stdout.write(JSON.stringify(require(${JSON.stringify(outfile)})))`], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { id: string; command: string[]; exitCode: number; decoded: number };
    assert.deepEqual({ id: result.id, command: result.command, exitCode: result.exitCode }, { id: "j1", command: ["echo", "hi"], exitCode: 0 });
    assert.ok(result.decoded >= 2, `api.proto and timestamp.proto decoded the old way (counted ${result.decoded})`);
  });

  it("the built CLI decodes no descriptor as it starts: every one it loads is in its table", () => {
    const script = `
      const { loadCli } = require(${JSON.stringify(join(ROOT, "bin", "load-cli.js"))});
      process.argv = [process.execPath, "hodei", "--version"];
      process.on("exit", () => process.stderr.write("decoded " + (globalThis.__hodeiDescriptorsDecoded ?? 0) + "\\n"));
      loadCli();`;
    const run = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /^\d+\.\d+\.\d+/);
    assert.match(run.stderr, /^decoded 0$/m);
    assert.match(readFileSync(join(ROOT, "dist", "cli.cjs"), "utf8"), /"hodei\/v1\/api\.proto"/, "the table's literal of our API's file");
  });
});
