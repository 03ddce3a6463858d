/**
 * JSON output for scripts. Messages are written with protobuf-es toJson (camelCase names, ISO 8601
 * timestamps, int64 as strings) and made predictable: every field is present, implicit ones with
 * their zero value (consumed: false) and unset optional ones as null (exitCode: null until the job
 * has exited).
 */
import { type DescMessage, type JsonObject, type MessageShape, toJson } from "@bufbuild/protobuf";

export function messageJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonObject {
  const json = toJson(schema, message, { alwaysEmitImplicit: true }) as JsonObject;
  const complete: JsonObject = {};
  for (const field of schema.fields) complete[field.jsonName] = json[field.jsonName] ?? null;
  return complete;
}

/** Pretty-printed JSON on stdout, one document. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** One compact JSON document per line (NDJSON), for streams. */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
