import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";

/**
 * Seals upstream credentials of models added through the API: AES-256-GCM with a key derived (HKDF) from the
 * salt key setting, or from the master key when none is set. A sealed value is `v1.<key id>.<iv>.<tag>.<data>`
 * (base64url); the key id names the key that sealed it, so a rotation can open old values with the previous key
 * (`credentials.previous_salt_key`) until `gatehouse models reseal` has sealed them again with the new one.
 * A value that does not open (tampered, or sealed by a key this replica does not have) is an error, never a
 * plaintext fallback.
 */
export class CredentialSeal {
  private readonly current: { id: string; key: Buffer };
  private readonly previous: { id: string; key: Buffer } | undefined;

  constructor(secret: string, previousSecret?: string) {
    this.current = derive(secret);
    this.previous = previousSecret ? derive(previousSecret) : undefined;
  }

  seal(plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.current.key, iv);
    const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return ["v1", this.current.id, iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), data.toString("base64url")].join(".");
  }

  open(sealed: string): string {
    const [version, id, iv, tag, data] = sealed.split(".");
    const key = id === this.current.id ? this.current.key : this.previous !== undefined && id === this.previous.id ? this.previous.key : undefined;
    if (version !== "v1" || !key || !iv || !tag || data === undefined) throw new Error("a model credential is sealed with a key this gateway does not have (credentials.salt_key)");
    const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64url"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(data, "base64url")), decipher.final()]).toString("utf8");
  }

  /** Sealed with the current key already? */
  isCurrent(sealed: string): boolean {
    return sealed.split(".")[1] === this.current.id;
  }
}

function derive(secret: string): { id: string; key: Buffer } {
  const key = Buffer.from(hkdfSync("sha256", secret, "", "gatehouse model credentials v1", 32));
  // The id identifies the key without revealing it: a hash of the derived key, not of the secret.
  return { id: createHash("sha256").update(key).digest("hex").slice(0, 12), key };
}
