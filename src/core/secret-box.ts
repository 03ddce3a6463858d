/**
 * Job secrets at rest: AES-256-GCM under the server's secret key (32 bytes, given to the
 * constructor: this module reads no file and no environment).
 *
 * Invariants:
 * - every value gets a fresh random 96-bit nonce, so sealing the same value twice gives two
 *   unrelated ciphertexts;
 * - the associated data binds a sealed value to its job id and its name: a row copied to another
 *   job, or swapped with another secret of the same job, fails to open instead of opening as
 *   something else;
 * - the GCM tag (16 bytes, appended to the ciphertext) makes any change to a stored row an error
 *   at open, never a wrong value;
 * - messages name the job and the secret, never its value or the key.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

export const SECRET_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const ALGORITHM = "aes-256-gcm";

export interface SealedSecret {
  name: string;
  nonce: Buffer;
  /** The encrypted value followed by its 16-byte GCM tag. */
  ciphertext: Buffer;
  /** keyIdOf the key that sealed it: says "another key" instead of "corrupt" when the key changed. */
  keyId: string;
}

/** A sealed secret that does not open: another key, or a row that was changed. */
export class SecretOpenError extends Error {
  override name = "SecretOpenError";
}

/**
 * A short public fingerprint of a key (16 hex digits of a domain-separated SHA-256): lets the
 * server tell "sealed with another key" from "damaged" without revealing anything of the key.
 */
export function keyIdOf(key: Buffer): string {
  return createHash("sha256").update("hodei secret key id\0").update(key).digest("hex").slice(0, 16);
}

function associatedData(jobId: string, name: string): Buffer {
  return Buffer.from(`hodei secret v1\0${jobId}\0${name}`, "utf8");
}

export class SecretBox {
  readonly keyId: string;

  constructor(
    private readonly key: Buffer,
    private readonly random: (size: number) => Buffer = randomBytes,
  ) {
    if (key.length !== SECRET_KEY_BYTES) throw new Error(`a secret key is ${SECRET_KEY_BYTES} bytes, got ${key.length}`);
    this.keyId = keyIdOf(key);
  }

  seal(jobId: string, name: string, value: string): SealedSecret {
    const nonce = this.random(NONCE_BYTES);
    const cipher = createCipheriv(ALGORITHM, this.key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(jobId, name));
    const ciphertext = Buffer.concat([cipher.update(value, "utf8"), cipher.final(), cipher.getAuthTag()]);
    return { name, nonce, ciphertext, keyId: this.keyId };
  }

  /** The plain value; throws SecretOpenError (naming job and secret, never the value) if it does not open. */
  open(jobId: string, sealed: SealedSecret): string {
    if (sealed.keyId !== this.keyId) {
      throw new SecretOpenError(
        `secret "${sealed.name}" of job ${jobId} was sealed with another server key (key id ${sealed.keyId}; this server's is ${this.keyId}): HODEI_SECRET_KEY or <data dir>/secret.key changed since the job was submitted`,
      );
    }
    if (sealed.nonce.length !== NONCE_BYTES || sealed.ciphertext.length < TAG_BYTES) throw new SecretOpenError(`secret "${sealed.name}" of job ${jobId} is damaged`);
    const body = sealed.ciphertext.subarray(0, sealed.ciphertext.length - TAG_BYTES);
    const tag = sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv(ALGORITHM, this.key, sealed.nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(associatedData(jobId, sealed.name));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
    } catch (err) {
      throw new SecretOpenError(`secret "${sealed.name}" of job ${jobId} does not open: it was changed, or belongs to another job or name`, { cause: err });
    }
  }
}
