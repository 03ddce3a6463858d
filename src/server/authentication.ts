/**
 * Authentication of the client API, for every service except WorkerService (agents prove who they
 * are with their OTP token, then their session: worker-service.ts). Each call must carry
 * `Authorization: Bearer <API key>`; the key is looked up by its hash on every call (no cache, so a
 * revoked key stops working at once), the method's rule is applied (access.ts), and the handler
 * gets the Caller (CALLER). With HODEI_AUTH=off every call is UNRESTRICTED.
 *
 * Danger zone: connect-es reads and decodes a unary request before any interceptor runs, so an
 * unauthenticated client still has its message parsed; the edge limits (message size, inflation,
 * timeouts) bound that work as they do for everyone. Streaming calls are refused before their
 * first message is read.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Clock } from "../core/clock.js";
import { PermissionDeniedError, UnauthenticatedError } from "../core/errors.js";
import { hashToken, isApiKeyShaped } from "../core/token.js";
import { WorkerService } from "../gen/hodei/v1/worker_pb.js";
import { scopesOf } from "../store/keys.js";
import type { Store } from "../store/store.js";
import { CALLER, type Caller, requireMethod, UNRESTRICTED } from "./access.js";

export interface AuthOptions {
  store: Store;
  clock: Clock;
  log: Logger;
  /** False with HODEI_AUTH=off. */
  isRequired: boolean;
}

/** Services that authenticate their callers themselves. */
const SELF_AUTHENTICATED = new Set([WorkerService.typeName]);

/** A key's use is written at most this often, ms: a write per minute per key, not one per call. */
export const LAST_USED_RESOLUTION_MS = 60_000;

const HOW_TO_GET_A_KEY =
  'An admin creates keys with "hodei keys create"; the first admin key is in admin.key in the server\'s data directory, which the hodei CLI reads by itself on the server\'s machine';

export function authInterceptor(options: AuthOptions): Interceptor {
  /**
   * When this process last tried to record each key's use, ms: a write that failed (the database
   * is locked; SQLite then blocks the event loop for its busy timeout) is not tried on every call.
   */
  const touchTriedAtMs = new Map<string, number>();
  return (next) => async (req) => {
    if (SELF_AUTHENTICATED.has(req.service.typeName)) return next(req);
    const caller = options.isRequired ? await authenticate(options, touchTriedAtMs, req.header.get("authorization")) : UNRESTRICTED;
    try {
      requireMethod(caller, req.service.typeName, req.method.name);
    } catch (err) {
      if (err instanceof PermissionDeniedError) options.log.info({ procedure: req.method.name, keyName: caller.keyName }, "request denied: missing scope");
      throw err;
    }
    req.contextValues.set(CALLER, caller);
    return next(req);
  };
}

async function authenticate({ store, clock, log }: AuthOptions, touchTriedAtMs: Map<string, number>, header: string | null): Promise<Caller> {
  if (!header) {
    throw new UnauthenticatedError(`missing API key: send the header "Authorization: Bearer <key>" (the hodei CLI: --token or HODEI_TOKEN). ${HOW_TO_GET_A_KEY}`);
  }
  const key = /^Bearer +(\S+) *$/i.exec(header)?.[1];
  if (!key) throw new UnauthenticatedError('the Authorization header must be "Bearer <key>"');
  if (!isApiKeyShaped(key)) throw new UnauthenticatedError('not an API key: Hodei API keys are "hodei_key_" and 43 more characters');
  const keyHash = hashToken(key);
  const row = await store.keys.findActiveByHash(keyHash);
  if (!row) {
    log.debug("request with an unknown or revoked API key");
    throw new UnauthenticatedError(`API key refused: unknown or revoked. ${HOW_TO_GET_A_KEY}`);
  }
  const nowMs = clock.nowMs();
  const staleAtMs = nowMs - LAST_USED_RESOLUTION_MS;
  if ((row.last_used_at ?? -Infinity) <= staleAtMs && (touchTriedAtMs.get(row.name) ?? -Infinity) <= staleAtMs) {
    touchTriedAtMs.set(row.name, nowMs);
    // Informational only: a write that fails (the database is locked) must not fail the call.
    store.keys.touch(row.name, nowMs, staleAtMs).catch((err: unknown) => log.debug({ err, keyName: row.name }, "could not record an API key's use"));
  }
  return {
    keyName: row.name,
    scopes: scopesOf(row),
    async assertActive() {
      if (!(await store.keys.findActiveByHash(keyHash))) throw new UnauthenticatedError(`API key "${row.name}" was revoked`);
    },
  };
}
