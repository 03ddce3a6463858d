/**
 * API keys over the API (hodei.v1.KeyService): create, list, revoke. Every method needs admin
 * (access.ts). A new key is returned once, in CreateKey's answer; only its hash is stored, and
 * nothing here logs it. Revoking takes effect at once: every call looks its key up (authentication.ts),
 * and the key's jobs that have not started are canceled (none would be claimed anyway: provision
 * skips them).
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { ConflictError, InvalidInputError, NotFoundError } from "../core/errors.js";
import { parseScopes } from "../core/scopes.js";
import { hashToken, mintApiKey } from "../core/token.js";
import { CreateKeyResponseSchema, type KeyService, ListKeysResponseSchema } from "../gen/hodei/v1/api_pb.js";
import { CALLER } from "./access.js";
import { toApiKey } from "./api-mapping.js";
import type { ServiceDeps } from "./service-deps.js";

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function validateKeyName(name: string): string {
  if (!KEY_NAME.test(name)) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}...` : name;
    throw new InvalidInputError(`name: "${shown}" is not a key name: letters, digits, ".", "_" and "-", at most 64, starting with a letter or digit`, "name");
  }
  return name;
}

/** Jobs cancelled per read when a key is revoked. */
const REVOKE_CANCEL_PAGE = 500;

export function createKeyService(deps: Pick<ServiceDeps, "store" | "clock" | "log" | "reconciler">): ServiceImpl<typeof KeyService> {
  const { store, clock, log } = deps;

  /**
   * A revoked key's jobs that have not started their command are canceled: a key revoked because it
   * leaked must not leave behind jobs it planted (delayed up to a year). Running ones finish.
   */
  async function cancelNotStarted(name: string): Promise<number> {
    const reason = `canceled: the API key "${name}" that submitted it was revoked before it started`;
    let canceled = 0;
    for (;;) {
      const ids = await store.jobs.notStartedIdsOf(name, REVOKE_CANCEL_PAGE);
      for (const id of ids) if (await deps.reconciler.cancelJob(id, reason)) canceled++;
      if (ids.length < REVOKE_CANCEL_PAGE) return canceled;
    }
  }

  return {
    async createKey(req, ctx) {
      const name = validateKeyName(req.name);
      const scopes = parseScopes(req.scopes);
      const key = mintApiKey();
      const row = await store.keys.insert({ name, keyHash: hashToken(key), scopes }, clock.nowMs());
      if (!row) throw new ConflictError(`name: an API key named "${name}" exists or existed (a revoked key keeps its name); choose another name`);
      log.info({ keyName: name, scopes, by: ctx.values.get(CALLER).keyName }, "api key created");
      return create(CreateKeyResponseSchema, { apiKey: toApiKey(row), key });
    },

    async listKeys(req) {
      return create(ListKeysResponseSchema, { keys: (await store.keys.list(req.all)).map(toApiKey) });
    },

    async revokeKey(req, ctx) {
      if (!req.name) throw new InvalidInputError("name: required", "name");
      const revoked = await store.keys.revoke(req.name, clock.nowMs());
      if (revoked) {
        const canceledJobs = await cancelNotStarted(req.name);
        log.info({ keyName: req.name, by: ctx.values.get(CALLER).keyName, canceledJobs }, "api key revoked; its jobs that had not started are canceled");
        return toApiKey(revoked);
      }
      // Nothing to revoke: already revoked (answered as it is), or no such key.
      const existing = await store.keys.get(req.name);
      if (!existing) throw new NotFoundError(`no API key named "${req.name}" (list them with "hodei keys ls --all")`);
      return toApiKey(existing);
    },
  };
}
