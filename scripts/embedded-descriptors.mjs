// The CLI's protobuf descriptors, decoded when the CLI is built instead of at every start.
//
// Generated code embeds each .proto file as a base64 FileDescriptorProto that `fileDesc` decodes
// when the module loads. Decoding needs descriptor.proto's own schema first (booted from a compact
// form), and protobuf-es compiles a reader for each message type it decodes: measured here, about
// 23 ms of every CLI command's start, against about 4.5 ms to build the same registries from
// objects already decoded.
//
// So the CLI bundle's `fileDesc` (esbuild plugin below) looks each file up in a table written by
// the build: the FileDescriptorProto message as a JavaScript literal, with the same own properties
// and the same prototypes of default values as protobuf-es gives a decoded message (presence,
// proto2 defaults and `jsonName` read as after a decode), built into the same registry. The table is
// keyed by a hash and the length of the base64 text; a file it does not hold is decoded as before,
// by protobuf-es's own `fileDesc`, loaded only then (and counted in
// globalThis.__hodeiDescriptorsDecoded). test/embedded-descriptors.test.ts checks that
// every file gives the same descriptors both ways.
import { mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
/** protobuf-es's ESM build: the plugin imports its internal modules by path. */
export const PROTOBUF_ESM = join(dirname(require.resolve("@bufbuild/protobuf")), "..", "esm");
/** The module of protobuf-es's `fileDesc`, which both plugins here replace. */
const FILE_DESC = join(PROTOBUF_ESM, "codegenv2", "file.js");

/** Has esbuild load FILE_DESC as `make(its own source)`. */
function replaceFileDesc(b, make) {
  b.onLoad({ filter: /codegenv2[\\/]file\.js$/ }, async (args) =>
    args.path === FILE_DESC ? { contents: make(await readFile(FILE_DESC, "utf8")), loader: "js", resolveDir: dirname(FILE_DESC) } : undefined,
  );
}

/** FNV-1a (32 bits) of a string's UTF-16 code units: with the length, the table's key. */
export function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
const FNV_SOURCE = fnv1a.toString();

/**
 * ESM source of the table: `EMBEDDED`, a Map from `${fnv1a(base64)}:${base64.length}` to a
 * function that makes the file's FileDescriptorProto (as fileDesc hands it to the registry: JSON
 * names restored), and `fnv1a`. `files`: [base64, DescFile] pairs, each DescFile made by fileDesc.
 */
export function tableSource(files) {
  const prototypes = [];
  const indexOf = new Map();
  const protoIndex = (prototype) => {
    let index = indexOf.get(prototype);
    if (index === undefined) {
      index = prototypes.length;
      indexOf.set(prototype, index);
      prototypes.push(null);
      prototypes[index] = ownProperties(prototype); // after the index is taken: nested prototypes come later
    }
    return index;
  };
  const literal = (value) => {
    if (value === null) return "null";
    if (typeof value === "string") return JSON.stringify(value);
    if (typeof value === "number" || typeof value === "boolean") return String(value);
    if (typeof value === "bigint") return `${value}n`;
    if (value instanceof Uint8Array) return `new Uint8Array([${value.join(",")}])`;
    if (Array.isArray(value)) return `[${value.map(literal).join(",")}]`;
    if (typeof value === "object") {
      const prototype = Object.getPrototypeOf(value);
      if (prototype === Object.prototype) return `{${ownProperties(value)}}`;
      if (prototype === null || Object.getPrototypeOf(prototype) !== Object.prototype) throw new Error("embedded descriptors: an object whose prototype chain is not one object deep");
      return `m(${protoIndex(prototype)},{${ownProperties(value)}})`;
    }
    throw new Error(`embedded descriptors: cannot write a ${typeof value}`);
  };
  function ownProperties(object) {
    return Object.getOwnPropertyNames(object)
      .map((name) => {
        const descriptor = Object.getOwnPropertyDescriptor(object, name);
        if (!descriptor.enumerable || !("value" in descriptor)) throw new Error(`embedded descriptors: property ${name} is not a plain enumerable value`);
        return `${JSON.stringify(name)}:${literal(descriptor.value)}`;
      })
      .join(",");
  }
  const entries = files.map(([base64, file]) => `[${JSON.stringify(`${fnv1a(base64)}:${base64.length}`)},()=>(${literal(file.proto)})]`);
  return [
    `const P=[${prototypes.map((p) => `{${p}}`).join(",")}];`,
    "const m=(p,o)=>Object.assign(Object.create(P[p]),o);",
    `export const EMBEDDED=new Map([${entries.join(",")}]);`,
    `export ${FNV_SOURCE}`,
  ].join("\n");
}

/** The module that replaces protobuf-es's codegenv2/file.js in the bundle. */
export function fileDescSource(tableModule, decodingModule) {
  return `import { createEmbeddedFileRegistry } from ${JSON.stringify(join(PROTOBUF_ESM, "registry.js"))};
import { EMBEDDED, fnv1a } from ${JSON.stringify(tableModule)};
export function fileDesc(b64, imports) {
  const make = EMBEDDED.get(fnv1a(b64) + ":" + b64.length);
  if (make === undefined) {
    // Counted, so that a test can tell that the CLI decodes none at start.
    globalThis.__hodeiDescriptorsDecoded = (globalThis.__hodeiDescriptorsDecoded ?? 0) + 1;
    return require(${JSON.stringify(decodingModule)}).fileDesc(b64, imports);
  }
  const root = make();
  root.dependency = imports === undefined ? [] : imports.map((f) => f.proto.name);
  return createEmbeddedFileRegistry(root, (name) => imports === undefined ? undefined : imports.find((f) => f.proto.name === name)).getFile(root.name);
}`;
}

/**
 * The esbuild plugin: codegenv2/file.js becomes fileDescSource over the table of `files`; the
 * original stays in the bundle under another name, for a file the table does not hold.
 */
export function embeddedDescriptors(files) {
  const TABLE = "hodei-embedded-descriptors:table";
  const DECODING = "hodei-embedded-descriptors:decoding";
  return {
    name: "embedded-descriptors",
    setup(b) {
      b.onResolve({ filter: /^hodei-embedded-descriptors:/ }, (args) => ({ path: args.path, namespace: "hodei-embedded" }));
      b.onLoad({ filter: /.*/, namespace: "hodei-embedded" }, async (args) =>
        args.path === TABLE
          ? { contents: tableSource(files), loader: "js", resolveDir: PROTOBUF_ESM }
          : { contents: await readFile(FILE_DESC, "utf8"), loader: "js", resolveDir: dirname(FILE_DESC) },
      );
      replaceFileDesc(b, () => fileDescSource(TABLE, DECODING));
    },
  };
}

/**
 * The descriptors a bundle loads, as [base64, DescFile] pairs: esbuild lists the generated modules
 * (`*_pb`) that `options` (the bundle's build options) takes in, and a throwaway bundle of just
 * those, whose fileDesc records what it decodes, is run here.
 */
export async function collectDescriptors(build, options) {
  const { metafile } = await build({ ...options, write: false, metafile: true, minify: false, sourcemap: false, logLevel: "silent" });
  // What the bundle holds (an input esbuild read but shook out has no bytes in the output).
  const inOutput = Object.values(metafile.outputs).flatMap((output) => Object.entries(output.inputs).filter(([, use]) => use.bytesInOutput > 0).map(([path]) => path));
  const generated = inOutput.filter((path) => /_pb\.(js|ts)$/.test(path));
  if (generated.length === 0) throw new Error("embedded descriptors: the bundle has no generated *_pb module");
  const recording = {
    name: "record-file-desc",
    setup(b) {
      replaceFileDesc(
        b,
        (source) =>
          `${source.replace("export function fileDesc(", "function decodeFileDesc(")}\nexport const RECORDED = [];\nexport function fileDesc(b64, imports) { const file = decodeFileDesc(b64, imports); RECORDED.push([b64, file]); return file; }\n`,
      );
    },
  };
  const dir = mkdtempSync(join(tmpdir(), "hodei-descriptors-"));
  try {
    // Namespace re-exports: a bare import of a module without side effects would be dropped.
    const entry = `${generated.map((path, i) => `export * as m${i} from ${JSON.stringify(join(process.cwd(), path))};`).join("\n")}\nexport { RECORDED } from ${JSON.stringify(FILE_DESC)};\n`;
    const outfile = join(dir, "descriptors.mjs");
    await build({ stdin: { contents: entry, resolveDir: process.cwd(), loader: "ts" }, bundle: true, platform: "node", format: "esm", outfile, logLevel: "warning", plugins: [recording] });
    const { RECORDED } = await import(pathToFileURL(outfile).href);
    if (RECORDED.length === 0) throw new Error("embedded descriptors: no file descriptor was decoded");
    return RECORDED;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
