import { z } from "zod";
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
