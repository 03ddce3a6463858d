/**
 * Which API key the CLI sends (the client sends it as `Authorization: Bearer <key>`): the global --token, else
 * HODEI_TOKEN, else, only for a server on a loopback address, the admin key the server wrote to
 * admin.key in its data directory (HODEI_DATA_DIR, default ./.hodei, as for the server), and only
 * when the server listening there is run by that file's owner (loopback-listener.ts; where /proc/net
 * cannot tell, as on macOS, it is sent). So the one-command start needs no setup, a key file is
 * never sent to another machine, and another local user who listens on the port is not handed it.
 */
import { readFileSync, statSync } from "node:fs";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Command } from "commander";
import { clientAdminKeyPath, clientToken, isLoopbackHost } from "../client-config.js";
import { CliError } from "./errors.js";
import { loopbackListenerUids } from "./loopback-listener.js";

export interface ApiKeyChoice {
  /** Undefined: none found; the request goes without one (and a server with auth on refuses it). */
  key?: string;
  /** Where the key came from, or where none was found: what an "unauthenticated" answer names. */
  source: string;
  /**
   * The key is a data directory's admin.key: it goes only to a listener run by the file's owner,
   * checked before every call (adminKeyGuard), since the server may stop and another process take
   * its port while a command runs (a `hodei run` that resumes its log stream).
   */
  adminKey?: { path: string; owner: number; host: string; port: number };
}

export function apiKeyOf(command: Command, serverUrl: string): ApiKeyChoice {
  const flag = command.optsWithGlobals<{ token?: string }>().token;
  const given = clientToken(flag);
  if (given !== undefined) return { key: given.trim(), source: flag !== undefined ? "--token" : "HODEI_TOKEN" };
  const path = clientAdminKeyPath();
  let url: URL | undefined;
  try {
    url = new URL(serverUrl);
  } catch {
    // An invalid URL is reported by connect().
  }
  if (!url || !isLoopbackHost(url.hostname)) return { source: "no --token or HODEI_TOKEN" };
  let key: string;
  let owner: number;
  try {
    key = readFileSync(path, "utf8").trim();
    owner = statSync(path).uid;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { source: `no --token, HODEI_TOKEN or ${path}` };
    throw new CliError(`cannot read the admin key ${path}: ${(err as Error).message} (give --token or HODEI_TOKEN instead)`, 1, { cause: err });
  }
  return { key, source: path, adminKey: { path, owner, host: url.hostname, port: Number(url.port) || (url.protocol === "https:" ? 443 : 80) } };
}

/**
 * Before each call: when the key is a data directory's admin.key, the call carries it only if every
 * socket listening for the server's address belongs to the key file's owner (loopback-listener.ts);
 * otherwise the key is taken off the call, which goes without one, and `source` says why. Where
 * /proc/net cannot be read, the key goes. Must come after the transport's interceptor that sets it.
 */
export function adminKeyGuard(choice: ApiKeyChoice, procNet?: string): Interceptor {
  return (next) => (req) => {
    const admin = choice.adminKey;
    if (admin) {
      const uids = loopbackListenerUids(admin.host, admin.port, procNet);
      if (uids !== null && !(uids.length > 0 && uids.every((uid) => uid === admin.owner))) {
        req.header.delete("authorization");
        const served = uids.length === 0 ? "nothing listens there" : `it is served by uid ${uids.join(", ")}`;
        choice.source = `not ${admin.path}: it belongs to uid ${admin.owner}, but ${served} (give --token or HODEI_TOKEN to send a key to that server)`;
      } else {
        choice.source = admin.path;
      }
    }
    return next(req);
  };
}

/**
 * Says which key was sent when the server refuses it (unauthenticated): the client's transport sends
 * the key itself; this interceptor only adds its source to the refusal.
 */
export function explainApiKey(choice: ApiKeyChoice): Interceptor {
  const explain = (err: unknown) =>
    err instanceof ConnectError && err.code === Code.Unauthenticated
      ? new ConnectError(`${err.rawMessage} (API key used: ${choice.source})`, err.code, err.metadata, undefined, err)
      : err;
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (err) {
            throw explain(err);
          }
        })(),
      };
    } catch (err) {
      throw explain(err);
    }
  };
}
