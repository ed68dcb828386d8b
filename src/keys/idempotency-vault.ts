import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import { ConflictError } from "../errors/errors.js";

/**
 * Seals and opens the stored results of requests made with an `Idempotency-Key`. A result may hold a new
 * plaintext key, and only hashes of keys are ever stored in the clear, so results are sealed with
 * AES-256-GCM under a key derived from the master key and the Idempotency-Key: the database alone cannot
 * reveal them. When a result is stored or replayed is idempotency-flow.ts; the header is read in http/.
 */
export class IdempotencyVault {
  constructor(private readonly masterKey: string) {}

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
      throw new ConflictError("this Idempotency-Key was already used for a different request", { code: "idempotency_key_reused", param: "Idempotency-Key" });
    }
    try {
      const iv = stored.response.subarray(0, 12);
      const tag = stored.response.subarray(12, 28);
      const decipher = createDecipheriv("aes-256-gcm", this.keyFor(idemKey), iv);
      decipher.setAuthTag(tag);
      return JSON.parse(Buffer.concat([decipher.update(stored.response.subarray(28)), decipher.final()]).toString("utf8")) as T;
    } catch {
      throw new ConflictError("the stored result of this Idempotency-Key cannot be read (was the master key changed?)", {
        code: "idempotency_result_unreadable",
        param: "Idempotency-Key",
      });
    }
  }

  private keyFor(idemKey: string): Buffer {
    return Buffer.from(hkdfSync("sha256", this.masterKey, "gatehouse-idempotency", idemKey, 32));
  }
}
