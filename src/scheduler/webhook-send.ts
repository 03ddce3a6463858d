/**
 * One webhook request: a POST of the body to the URL, answered by its status code only. The
 * response body is never read (the socket is closed once the status line and headers are in), no
 * redirect is followed (a 3xx is a failed request), there is no keep-alive and no proxy, and the
 * whole request has a time limit.
 *
 * Server-side request forgery (core/webhook-address.ts): unless private addresses are allowed, a
 * host written as an address is checked before anything is sent, and a name is resolved by our own
 * `lookup`, which checks every address the name resolves to and hands the socket exactly the
 * addresses it checked. The check and the connection use the same answer, so a name that resolves
 * to a public address when checked and to 127.0.0.1 a moment later (DNS rebinding) cannot slip
 * through.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { addressRefusal, webhookUrlProblem } from "../core/webhook-address.js";

export interface WebhookRequest {
  url: string;
  body: string;
  headers: Record<string, string>;
  /** The whole request (connection, sending, the answer's headers), ms. */
  timeoutMs: number;
  isPrivateAllowed: boolean;
}

export interface SendOutcome {
  /** HTTP status of the answer; null when there was none. */
  status: number | null;
  /** Why the request failed, in words; "" when answered (whatever the status). */
  error: string;
  /** Refused by the address rule: no request was made, and trying again cannot help. */
  isRefused: boolean;
}

export type WebhookSender = (request: WebhookRequest, signal?: AbortSignal) => Promise<SendOutcome>;

/** The error code our lookup gives a name that resolves to a refused address. */
const REFUSED_CODE = "EHODEI_ADDRESS_REFUSED";

/** dns.lookup's shape with all: true; `signal` says the request is gone (a limiter drops a lookup still waiting). */
export type Resolve = (hostname: string, options: { all: true; family?: number; hints?: number }, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void, signal?: AbortSignal) => void;

/**
 * Webhook name lookups at once, across the process. dns.lookup is getaddrinfo on one of libuv's
 * four threads, held until the resolver answers: a resolver that does not (a webhook host whose DNS
 * server is down) holds it for its whole timeout, 5 s or more per try. Unbounded, eight deliveries
 * to such a host took every thread, and the server's file writes, compression and crypto waited.
 */
export const MAX_LOOKUPS = 2;

/**
 * Runs at most `max` resolves at once; the others wait their turn, and one whose request is gone
 * meanwhile (its signal aborted: the request's time limit, the server stopping) is dropped unasked.
 */
export class LookupLimiter {
  private running = 0;
  private readonly waiting: { start: () => void; signal?: AbortSignal }[] = [];

  constructor(
    private readonly resolve: Resolve,
    private readonly max: number,
  ) {}

  /** Lookups started and not yet answered (tests). */
  get active(): number {
    return this.running;
  }

  /** Lookups waiting for a turn (tests). */
  get queued(): number {
    return this.waiting.length;
  }

  readonly lookup: Resolve = (hostname, options, callback, signal) => {
    const start = () => {
      this.running++;
      this.resolve(hostname, options, (err, addresses) => {
        this.running--;
        this.next();
        callback(err, addresses);
      });
    };
    if (this.running < this.max) start();
    else this.waiting.push({ start, signal });
  };

  private next(): void {
    while (this.running < this.max) {
      const turn = this.waiting.shift();
      if (!turn) return;
      if (!turn.signal?.aborted) turn.start();
    }
  }
}

const systemLookups = new LookupLimiter(dnsLookup as unknown as Resolve, MAX_LOOKUPS);

/**
 * A `lookup` for sockets that refuses names resolving to any refused address (one bad address
 * among good ones is enough: which one the socket would use is not ours to guess), unless
 * `isPrivateAllowed`. `resolve` is dns.lookup; tests give their own.
 */
export function checkedLookup(resolve: Resolve = systemLookups.lookup, isPrivateAllowed = false, signal?: AbortSignal): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { all: true, family: options.family as number | undefined, hints: options.hints }, (err, addresses) => {
      if (err) return callback(err, "", 0);
      const refused = isPrivateAllowed ? undefined : addresses.map((a) => ({ address: a.address, why: addressRefusal(a.address) })).find((a) => a.why !== null);
      if (refused || addresses.length === 0) {
        const message = refused
          ? `${hostname} resolves to ${refused.address}, a ${refused.why} address; webhooks go to public addresses only (the server allows others with HODEI_WEBHOOK_ALLOW_PRIVATE=1)`
          : `${hostname} resolves to no address`;
        return callback(Object.assign(new Error(message), { code: refused ? REFUSED_CODE : "ENOTFOUND" }), "", 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    }, signal);
  };
}

/** Sends one webhook request (see the module comment). Never throws: a failure is the outcome's error. */
export async function sendWebhook(request: WebhookRequest, signal?: AbortSignal, resolveName?: Resolve): Promise<SendOutcome> {
  const problem = webhookUrlProblem(request.url, request.isPrivateAllowed);
  if (problem) return { status: null, error: `refused: ${problem}`, isRefused: true };
  const url = new URL(request.url);
  const client = url.protocol === "https:" ? https : http;
  // Ends with the request: a lookup still waiting for its turn is then dropped (LookupLimiter).
  const gone = new AbortController();
  return new Promise<SendOutcome>((resolve) => {
    let isSettled = false;
    const settle = (outcome: SendOutcome) => {
      if (isSettled) return;
      isSettled = true;
      gone.abort();
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(outcome);
    };
    const req = client.request(
      url,
      {
        method: "POST",
        headers: { ...request.headers, "content-length": String(Buffer.byteLength(request.body)) },
        agent: false,
        lookup: checkedLookup(resolveName, request.isPrivateAllowed, gone.signal),
      },
      (res) => {
        // The status is all we need: the body is not read, and the connection goes with it.
        res.destroy();
        req.destroy();
        settle({ status: res.statusCode ?? null, error: "", isRefused: false });
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${request.timeoutMs} ms`)), request.timeoutMs);
    const onAbort = () => req.destroy(new Error("the control plane is stopping"));
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();
    req.on("error", (err: NodeJS.ErrnoException) => {
      settle({ status: null, error: err.code && err.code !== REFUSED_CODE && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message, isRefused: err.code === REFUSED_CODE });
    });
    req.end(request.body);
  });
}
