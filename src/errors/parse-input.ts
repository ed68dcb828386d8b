import type { z } from "zod";
import { BadRequestError } from "./errors.js";

/**
 * Request bodies and queries checked against their zod schema, for every route: the first problem becomes a 400 that
 * names the field (an unknown field by name), before anything is read or written.
 */

/** Validates `input` against `schema`, turning the first problem into a 400 that names the field. */
export function parseBody<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  if (input === undefined || input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new BadRequestError("request body must be a JSON object");
  }
  return parseInput(schema, input);
}

export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.length > 0 ? issue.path.map(String).join(".") : null;
  const unknownKeys = issue.code === "unrecognized_keys" ? issue.keys : undefined;
  if (unknownKeys) throw new BadRequestError(`unknown field(s): ${unknownKeys.join(", ")}`, { param: unknownKeys[0] ?? null });
  throw new BadRequestError(param ? `${param}: ${issue.message}` : issue.message, { param });
}
