/**
 * The small pieces every call of the Kubernetes provider shares: passing an AbortSignal to
 * @kubernetes/client-node 1.4 (through a middleware), reading an ApiException's HTTP code and
 * message (the Status body's), and wrapping a failure with what was being done, as an
 * UnavailableError when the API server cannot be reached.
 */
import * as k8s from "@kubernetes/client-node";
import { UnavailableError } from "../core/errors.js";

/** Request options that abort the call with `signal` (client-node takes it through a middleware). */
export function withSignal(signal: AbortSignal | undefined): k8s.ConfigurationOptions | undefined {
  if (!signal) return undefined;
  const middleware: k8s.ObservableMiddleware = {
    pre(context) {
      context.setSignal(signal);
      return new k8s.Observable(Promise.resolve(context));
    },
    post: (response) => new k8s.Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}

export function codeOf(err: unknown): number | undefined {
  return (err as { code?: number } | undefined)?.code;
}

export function messageOf(err: unknown): string {
  const body = (err as { body?: unknown } | undefined)?.body;
  if (typeof body === "string") {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  if (body && typeof body === "object" && "message" in body) return String((body as { message: unknown }).message);
  return (err as Error)?.message ?? String(err);
}

export function wrap(what: string, err: unknown): Error {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "ECONNRESET") return new UnavailableError(`kubernetes: ${what}: ${messageOf(err)}`);
  return new Error(`kubernetes: ${what}: ${messageOf(err)}`, { cause: err });
}
