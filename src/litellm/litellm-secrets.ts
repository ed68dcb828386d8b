import { createHash } from "node:crypto";
import nacl from "tweetnacl";

/**
 * Opens a value LiteLLM sealed in its database (the string values of a database model's `litellm_params`).
 * LiteLLM seals with NaCl's secretbox (XSalsa20-Poly1305) under sha256 of its salt key — `LITELLM_SALT_KEY`, or
 * its master key when none was set — and stores base64 of the 24-byte nonce followed by the box. Node's crypto
 * has no XSalsa20, hence tweetnacl (audited, no dependencies). Returns null for a value that does not open (not
 * sealed, sealed under another key, or tampered): the caller decides what that means.
 */
export function openLiteLLMSecret(value: string, saltKey: string): string | null {
  const sealed = Buffer.from(value, "base64");
  if (sealed.length < nacl.secretbox.nonceLength + nacl.secretbox.overheadLength) return null;
  const key = createHash("sha256").update(saltKey, "utf8").digest();
  const nonce = sealed.subarray(0, nacl.secretbox.nonceLength);
  const box = sealed.subarray(nacl.secretbox.nonceLength);
  const opened = nacl.secretbox.open(new Uint8Array(box), new Uint8Array(nonce), new Uint8Array(key));
  return opened ? Buffer.from(opened).toString("utf8") : null;
}
