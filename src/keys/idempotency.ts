import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import { BadRequestError, ConflictError } from "../errors/errors.js";

/**
 * Stored results of requests made with an `Idempotency-Key`. A result may hold a new plaintext key, and
 * only hashes of keys are ever stored in the clear, so results are sealed with AES-256-GCM under a key
 * derived from the master key and the Idempotency-Key: the database alone cannot reveal them.
 */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export class IdempotencyVault {
  constructor(private readonly masterKey: string) {}

  /** Validates the header; undefined when absent. */
  static parseHeader(value: string | string[] | undefined): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "string" || !IDEMPOTENCY_KEY.test(value)) {
      throw new BadRequestError("Idempotency-Key must be 1 to 255 visible ASCII characters", "Idempotency-Key", "invalid_idempotency_key");
    }
    return value;
  }

  /** Identifies "the same request": a retry must match it, or it is a reuse of the key for something else. */
  fingerprint(scope: string, request: unknown): string {
    return createHash("sha256").update(scope).update("\0").update(JSON.stringify(request)).digest("hex");
  }

  seal(idemKey: string, response: unknown): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.keyFor(idemKey), iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(response), "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  /** The first response, if `fingerprint` matches the stored one; 409 if the key was used for another request. */
  open<T>(idemKey: string, stored: { fingerprint: string; response: Buffer }, fingerprint: string): T {
    if (stored.fingerprint !== fingerprint) {
      throw new ConflictError("this Idempotency-Key was already used for a different request", "idempotency_key_reused", "Idempotency-Key");
    }
    try {
      const iv = stored.response.subarray(0, 12);
      const tag = stored.response.subarray(12, 28);
      const decipher = createDecipheriv("aes-256-gcm", this.keyFor(idemKey), iv);
      decipher.setAuthTag(tag);
      return JSON.parse(Buffer.concat([decipher.update(stored.response.subarray(28)), decipher.final()]).toString("utf8")) as T;
    } catch {
      throw new ConflictError("the stored result of this Idempotency-Key cannot be read (was the master key changed?)", "idempotency_result_unreadable", "Idempotency-Key");
    }
  }

  private keyFor(idemKey: string): Buffer {
    return Buffer.from(hkdfSync("sha256", this.masterKey, "gatehouse-idempotency", idemKey, 32));
  }
}
