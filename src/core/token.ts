/**
 * OTP tokens, sessions and API keys: random secrets (256 bits); only their SHA-256 hash is stored.
 * The prefixes make a leaked secret recognisable in a scan ("hodei_otp_...", "hodei_key_...").
 */
import { createHash, randomBytes } from "node:crypto";

export const API_KEY_PREFIX = "hodei_key_";

export function mintOtpToken(): string {
  return `hodei_otp_${randomBytes(32).toString("base64url")}`;
}

export function mintSessionToken(): string {
  return `hodei_ses_${randomBytes(32).toString("base64url")}`;
}

/** An API key for a client of the API (see core/scopes.ts for what it may do). */
export function mintApiKey(): string {
  return `${API_KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
}

/** Whether `text` has the shape of a key mintApiKey makes (prefix and 43 base64url characters). */
export function isApiKeyShaped(text: string): boolean {
  return /^hodei_key_[A-Za-z0-9_-]{43}$/.test(text);
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
