import { createHash } from "node:crypto";
import nacl from "tweetnacl";

/**
 * Seals a value as LiteLLM does in its database (the inverse of src/litellm/litellm-secrets.ts openLiteLLMSecret),
 * for tests that build a LiteLLM database: NaCl's secretbox under sha256 of the salt key, base64 of the nonce and
 * the box.
 */
export function sealLiteLLMSecret(value: string, saltKey: string): string {
  const key = createHash("sha256").update(saltKey, "utf8").digest();
  const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
  const box = nacl.secretbox(new Uint8Array(Buffer.from(value, "utf8")), nonce, new Uint8Array(key));
  return Buffer.concat([nonce, box]).toString("base64");
}
