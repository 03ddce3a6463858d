/**
 * The dashboard's only way to the control plane: Connect clients of hodei.v1.JobService,
 * ScheduleService and KeyService over the Connect protocol (binary protobuf) on the page's own origin, the API key of
 * the session (sessionStorage: gone when the tab closes) sent as a bearer token on every call.
 */
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { JobService, KeyService, ScheduleService } from "../../src/gen/hodei/v1/api_pb.js";

const KEY_ITEM = "hodei.apiKey";

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function storeKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

const sendKey: Interceptor = (next) => (req) => {
  const key = storedKey();
  if (key) req.header.set("authorization", `Bearer ${key}`);
  return next(req);
};

const transport = createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [sendKey] });

export const jobs = createClient(JobService, transport);
export const keys = createClient(KeyService, transport);
export const schedules = createClient(ScheduleService, transport);

export function codeOf(err: unknown): Code | undefined {
  return err instanceof ConnectError ? err.code : undefined;
}

/** The message to show for a failed call. */
export function messageOf(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage || Code[err.code];
  return err instanceof Error ? err.message : String(err);
}

export { Code };
