/**
 * The OpenTelemetry settings of the control plane, from the standard OTEL_* variables (config.ts,
 * the only reader of process.env, hands them over). Tracing is off unless an OTLP endpoint is set;
 * off, no OpenTelemetry module is even loaded (scheduler/job-trace.ts).
 *
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  the URL spans are POSTed to, as is
 *   OTEL_EXPORTER_OTLP_ENDPOINT         a base URL: spans go to <base>/v1/traces
 *   OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL  http/json, the only one this build sends (unset: the same)
 *   OTEL_EXPORTER_OTLP_(TRACES_)HEADERS   k=v,k2=v2 (values URL-encoded), e.g. an authorization header
 *   OTEL_SERVICE_NAME                   service.name of every span. Default "hodei"
 *   OTEL_SDK_DISABLED                   true turns tracing off whatever else is set
 * An empty variable counts as unset, as the OpenTelemetry specification says.
 */
import { z } from "zod";

export interface TracingConfig {
  /** Where spans are POSTed (OTLP over HTTP, JSON encoding). */
  url: string;
  headers: Record<string, string>;
  serviceName: string;
}

const MAX_HEADERS_CHARS = 8192;
const SUPPORTED_PROTOCOL = "http/json";

const unsetIfEmpty = (v: unknown) => (v === "" ? undefined : v);
const httpUrl = z.preprocess(unsetIfEmpty, z.url({ protocol: /^https?$/, message: "an http:// or https:// URL" }).optional());
const headers = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .max(MAX_HEADERS_CHARS)
    .optional()
    .transform((text, ctx) => {
      const out: Record<string, string> = {};
      for (const pair of (text ?? "").split(",").map((p) => p.trim()).filter(Boolean)) {
        const eq = pair.indexOf("=");
        const name = eq > 0 ? pair.slice(0, eq).trim() : "";
        if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) {
          ctx.addIssue({ code: "custom", message: `"${pair.slice(0, 40)}" is not name=value with a valid header name` });
          continue;
        }
        try {
          out[name.toLowerCase()] = decodeURIComponent(pair.slice(eq + 1).trim());
        } catch {
          ctx.addIssue({ code: "custom", message: `the value of ${name} is not URL-encoded text` });
        }
      }
      return out;
    }),
);
const protocol = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .optional()
    .refine((v) => v === undefined || v === SUPPORTED_PROTOCOL, {
      message: `hodei sends OTLP traces as ${SUPPORTED_PROTOCOL} (http/protobuf and grpc are not built in): set ${SUPPORTED_PROTOCOL} or leave it unset`,
    }),
);

const TracingEnv = z.object({
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl,
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl,
  OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol,
  OTEL_EXPORTER_OTLP_HEADERS: headers,
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: headers,
  OTEL_SERVICE_NAME: z.preprocess(unsetIfEmpty, z.string().max(256).default("hodei")),
  OTEL_SDK_DISABLED: z.preprocess(unsetIfEmpty, z.enum(["true", "false", "TRUE", "FALSE", "True", "False"]).optional()),
});

/** The tracing settings, or undefined when tracing is off. Throws "invalid configuration: ..." naming the variable. */
export function parseTracingConfig(env: Record<string, string | undefined>): TracingConfig | undefined {
  const parsed = TracingEnv.safeParse(env);
  if (!parsed.success) throw new Error(`invalid configuration:\n${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  if (e.OTEL_SDK_DISABLED?.toLowerCase() === "true") return undefined;
  const base = e.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url = e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base === undefined ? undefined : `${base.replace(/\/+$/, "")}/v1/traces`);
  if (url === undefined) return undefined;
  return { url, headers: { ...e.OTEL_EXPORTER_OTLP_HEADERS, ...e.OTEL_EXPORTER_OTLP_TRACES_HEADERS }, serviceName: e.OTEL_SERVICE_NAME };
}
