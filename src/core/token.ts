/**
 * OTP tokens and sessions: random secrets handed to a worker; only their SHA-256 hash is stored.
 * The prefixes make a leaked secret recognisable in a scan ("hodei_otp_...").
 */
import { createHash, randomBytes } from "node:crypto";

export function mintOtpToken(): string {
  return `hodei_otp_${randomBytes(32).toString("base64url")}`;
}

export function mintSessionToken(): string {
  return `hodei_ses_${randomBytes(32).toString("base64url")}`;
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
