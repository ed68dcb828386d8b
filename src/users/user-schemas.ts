import { z } from "zod";
import { ID, limitFields, notSupported, text } from "../keys/key-schemas.js";
import { USER_FIELDS, refusedNames } from "../config/litellm-fields.js";

/**
 * Request bodies of the /user admin routes, LiteLLM's field names (docs/users.md). LiteLLM user fields Gatehouse does
 * not support are refused with a 400 naming them unless they ask for nothing.
 */

const userFields = {
  user_email: text().nullable().optional(),
  user_alias: text().nullable().optional(),
  user_role: z.enum(["proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer", "team", "customer"]).optional(),
  ...limitFields,
  ...notSupported(refusedNames(USER_FIELDS)),
};

export const newUserSchema = z.object({ ...userFields, user_id: ID.optional(), auto_create_key: z.boolean().default(true) }).strict();
export const updateUserSchema = z.object({ ...userFields, user_id: ID }).strict();
export const deleteUsersSchema = z.object({ user_ids: z.array(ID).min(1).max(1_000) }).strict();
export const userInfoQuerySchema = z.object({ user_id: ID });
export const listUsersQuerySchema = z.object({
  page: z.coerce.number().int().min(1).max(1_000_000).default(1),
  page_size: z.coerce.number().int().min(1).max(100).default(25),
});

export type NewUserRequest = z.infer<typeof newUserSchema>;
export type UpdateUserRequest = z.infer<typeof updateUserSchema>;
