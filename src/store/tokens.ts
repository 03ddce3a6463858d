/**
 * Queries on the otp_tokens table. Only a token's SHA-256 hash is stored; consuming it is one
 * guarded statement, so a token registers one worker, once. The consuming agent's instance key
 * is kept (as a hash) with it: only that same agent process may repeat its Register (see
 * AttemptQueries.reRegister).
 */
import type { Kysely } from "kysely";
import { firstRow } from "./compiled.js";
import type { Database, OtpTokenRow } from "./schema.js";

export class TokenQueries {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Consumes an OTP token: hash matches, not consumed, not expired, and its worker's
   * provider_resource_id already recorded. Null when any of these fails; nothing changes then.
   * instanceKeyHash: the hash of the consuming agent's instance key, or null when it sent none.
   * expiryCheckMs: the time the expiry is compared with (by default nowMs; the caller passes its
   * present time when the control plane was absent for a while, see scheduler/liveness.ts).
   */
  async consume(tokenHash: string, nowMs: number, instanceKeyHash: string | null = null, expiryCheckMs = nowMs): Promise<OtpTokenRow | null> {
    const row = await firstRow(this.db, "tokens.consume", [nowMs, instanceKeyHash, tokenHash, expiryCheckMs], (p) =>
      this.db
        .updateTable("otp_tokens")
        .set({ consumed_at: p(0), instance_key_hash: p(1) })
        .where("token_hash", "=", p(2))
        .where("consumed_at", "is", null)
        .where("expires_at", ">", p(3))
        .where("provider_resource_id", "is not", null)
        .returningAll(),
    );
    return row ?? null;
  }

  async getByHash(tokenHash: string): Promise<OtpTokenRow | undefined> {
    return this.db.selectFrom("otp_tokens").selectAll().where("token_hash", "=", tokenHash).executeTakeFirst();
  }

  async list(limit: number): Promise<OtpTokenRow[]> {
    return this.db.selectFrom("otp_tokens").selectAll().orderBy("created_at", "desc").orderBy("id", "desc").limit(limit).execute();
  }
}
