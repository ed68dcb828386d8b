import { z } from "zod";
import { unreadPrices } from "../config/models.js";
import { BadRequestError } from "../errors/errors.js";
import { parseBody } from "../errors/parse-input.js";
import { metadata, text } from "../keys/key-schemas.js";
import { apiLitellmParamsSchema } from "./model-params.js";

/** Request bodies of the /model admin routes, LiteLLM's shapes (docs/models.md). */
export const newModelSchema = z.object({ model_name: text(), litellm_params: apiLitellmParamsSchema, model_info: metadata.optional() }).strict();
export const updateModelSchema = z
  // litellm_params given here are merged over the stored ones (LiteLLM's partial update): `{api_key}` alone rotates the key.
  .object({ model_id: z.uuid().optional(), model_name: text().optional(), litellm_params: apiLitellmParamsSchema.partial().optional(), model_info: metadata.optional() })
  .strict();
export const deleteModelSchema = z.object({ id: z.uuid() }).strict();

export type NewModelRequest = z.infer<typeof newModelSchema>;
export type UpdateModelRequest = z.infer<typeof updateModelSchema>;

/**
 * A /model/new or /model/update body, parsed. A field that looks like a price but is not one Gatehouse reads is
 * refused first, with the config file's message (config/models.ts, unreadPrices): a strict schema alone would call
 * `input_cost_per_tokn` an unknown field without saying which price was meant.
 */
export function parseModelBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body !== null && typeof body === "object") {
    const { litellm_params: params, model_info: info } = body as Record<string, unknown>;
    const [first] = unreadPrices(params, info);
    if (first) throw new BadRequestError(`${first.field}: ${first.message}`, { code: "unread_price", param: first.field });
  }
  return parseBody(schema, body);
}
