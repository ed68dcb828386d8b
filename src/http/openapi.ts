import { spendKeysQuerySchema, spendUsersQuerySchema } from "../spendlogs/spend-totals.js";
import { z } from "zod";
import { spendLogsQuerySchema, spendReportQuerySchema } from "../spendlogs/spend-log-reader.js";
import {
  deleteTeamsSchema,
  listTeamsQuerySchema,
  memberAddSchema,
  memberDeleteSchema,
  memberUpdateSchema,
  newTeamSchema,
  teamInfoQuerySchema,
  teamRefSchema,
  updateTeamSchema,
} from "../teams/team-schemas.js";
import { deleteUsersSchema, listUsersQuerySchema, newUserSchema, updateUserSchema, userInfoQuerySchema } from "../users/user-schemas.js";
import { deleteModelSchema, newModelSchema, updateModelSchema } from "../models/model-schemas.js";
import { deleteKeysSchema, generateKeySchema, keyRefSchema, listKeysQuerySchema, regenerateKeySchema, resetSpendSchema, updateKeySchema } from "../keys/key-schemas.js";

/**
 * The OpenAPI 3.1 document served at /openapi.json. Admin request bodies are the zod schemas that validate
 * them (key-schemas.ts), converted to JSON Schema (2020-12, which OpenAPI 3.1 uses), so the document
 * cannot drift from what the routes accept. Proxy bodies are OpenAI's: Gatehouse checks `model` and
 * `stream` (and its limits read `max_tokens`) and passes the rest through, so only those are described.
 * test/openapi.test.ts checks that every route the app serves is here.
 */
const jsonSchema = (schema: z.ZodType) => {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
};

const errorBody = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["message", "type", "param", "code"],
      properties: { message: { type: "string" }, type: { type: "string" }, param: { type: ["string", "null"] }, code: { type: ["string", "integer", "null"] } },
    },
  },
};

const proxyBody = {
  type: "object",
  required: ["model"],
  properties: {
    model: { type: "string", description: "a model_name from the config" },
    stream: { type: "boolean" },
    stream_options: { type: "object", properties: { include_usage: { type: "boolean" } } },
    max_tokens: { type: "integer", minimum: 1, description: "also bounds the worst-case reservation against budgets and tpm" },
    max_completion_tokens: { type: "integer", minimum: 1 },
  },
  additionalProperties: true,
};

type Operation = {
  summary: string;
  security: "master" | "session" | "virtual" | "metrics" | "none";
  body?: object;
  query?: z.ZodObject;
  pathKey?: boolean;
  pathParam?: string;
  answers?: string;
};

const OPERATIONS: Record<string, Record<"get" | "post", Operation | undefined>> = {
  "/v1/chat/completions": { post: { summary: "Chat completion (OpenAI); `stream: true` relays server-sent events", security: "virtual", body: proxyBody }, get: undefined },
  "/chat/completions": { post: { summary: "Alias of /v1/chat/completions", security: "virtual", body: proxyBody }, get: undefined },
  "/v1/completions": { post: { summary: "Text completion (OpenAI)", security: "virtual", body: proxyBody }, get: undefined },
  "/completions": { post: { summary: "Alias of /v1/completions", security: "virtual", body: proxyBody }, get: undefined },
  "/v1/embeddings": { post: { summary: "Embeddings (OpenAI)", security: "virtual", body: proxyBody }, get: undefined },
  "/embeddings": { post: { summary: "Alias of /v1/embeddings", security: "virtual", body: proxyBody }, get: undefined },
  "/v1/responses": {
    post: { summary: "Responses (OpenAI); relayed to OpenAI's own API, translated through chat for every other deployment (not stored)", security: "virtual", body: proxyBody },
    get: undefined,
  },
  "/responses": { post: { summary: "Alias of /v1/responses", security: "virtual", body: proxyBody }, get: undefined },
  "/v1/messages": {
    post: {
      summary: "Messages (Anthropic; key in x-api-key or Authorization); relayed to Anthropic deployments, translated for every other; errors in Anthropic's shape",
      security: "virtual",
      body: proxyBody,
    },
    get: undefined,
  },
  "/v1/messages/count_tokens": {
    post: { summary: "Token count (Anthropic); estimated where the deployment's provider has none (Gatehouse-Token-Count says so)", security: "virtual", body: proxyBody },
    get: undefined,
  },
  "/v1/models": { get: { summary: "The models this key may use", security: "virtual" }, post: undefined },
  "/models": { get: { summary: "Alias of /v1/models", security: "virtual" }, post: undefined },
  "/v1/models/{id}": { get: { summary: "One model, if this key may use it (OpenAI's models.retrieve)", security: "virtual" }, post: undefined },
  "/models/{id}": { get: { summary: "Alias of /v1/models/{id}", security: "virtual" }, post: undefined },
  "/team/new": { post: { summary: "Create a team (team_id generated if absent; ids are never reused)", security: "master", body: jsonSchema(newTeamSchema) }, get: undefined },
  "/team/update": {
    post: { summary: "Change a team: one event, every key of the team follows on every replica", security: "master", body: jsonSchema(updateTeamSchema) },
    get: undefined,
  },
  "/team/delete": { post: { summary: "Delete teams and their keys (team ids are never reused)", security: "master", body: jsonSchema(deleteTeamsSchema) }, get: undefined },
  "/team/block": { post: { summary: "Block a team: every key of it refuses, on every replica", security: "master", body: jsonSchema(teamRefSchema) }, get: undefined },
  "/team/unblock": { post: { summary: "Unblock a team", security: "master", body: jsonSchema(teamRefSchema) }, get: undefined },
  "/team/member_add": { post: { summary: "Add or update members (members_with_roles)", security: "master", body: jsonSchema(memberAddSchema) }, get: undefined },
  "/team/member_update": { post: { summary: "Change a member's role or budget in the team", security: "master", body: jsonSchema(memberUpdateSchema) }, get: undefined },
  "/team/member_delete": { post: { summary: "Remove a member", security: "master", body: jsonSchema(memberDeleteSchema) }, get: undefined },
  "/team/info": { get: { summary: "A team, its first 100 keys and its key count", security: "master", query: teamInfoQuerySchema }, post: undefined },
  "/team/list": { get: { summary: "Teams, paged", security: "master", query: listTeamsQuerySchema }, post: undefined },
  "/user/new": { post: { summary: "Create a user (and, unless auto_create_key is false, a key of theirs)", security: "master", body: jsonSchema(newUserSchema) }, get: undefined },
  "/user/update": {
    post: { summary: "Change a user: one event, every key of the user follows on every replica", security: "master", body: jsonSchema(updateUserSchema) },
    get: undefined,
  },
  "/user/delete": { post: { summary: "Delete users and their keys (user ids are never reused)", security: "master", body: jsonSchema(deleteUsersSchema) }, get: undefined },
  "/spend/logs": {
    get: { summary: "Spend log rows, newest first, by key, user, team, request id and dates (LiteLLM's shape)", security: "master", query: spendLogsQuerySchema },
    post: undefined,
  },
  "/global/spend/report": {
    get: { summary: "Daily spend by team, key, user or model, from the daily totals", security: "master", query: spendReportQuerySchema },
    post: undefined,
  },
  "/global/spend/keys": {
    get: { summary: "The keys that spent most (their durable spend), LiteLLM's shape", security: "master", query: spendKeysQuerySchema },
    post: undefined,
  },
  "/global/spend/teams": { get: { summary: "Each team's spend per day over the last 30 days, LiteLLM's shape", security: "master" }, post: undefined },
  "/spend/keys": { get: { summary: "Keys as /key/info shows them, most spent first", security: "master", query: spendKeysQuerySchema }, post: undefined },
  "/spend/users": { get: { summary: "Users as /user/info shows them, most spent first", security: "master", query: spendUsersQuerySchema }, post: undefined },
  "/user/info": { get: { summary: "A user, their first 100 keys and their key count", security: "master", query: userInfoQuerySchema }, post: undefined },
  "/user/list": { get: { summary: "Users, paged", security: "master", query: listUsersQuerySchema }, post: undefined },
  "/model/new": { post: { summary: "Add a model deployment (its api_key sealed at rest, never returned)", security: "master", body: jsonSchema(newModelSchema) }, get: undefined },
  "/model/update": { post: { summary: "Change a database model; every replica serves the change", security: "master", body: jsonSchema(updateModelSchema) }, get: undefined },
  "/model/delete": {
    post: { summary: "Delete a database model: every replica stops serving it and forgets its key", security: "master", body: jsonSchema(deleteModelSchema) },
    get: undefined,
  },
  "/model/info": { get: { summary: "Every deployment, from the config and the database (never a key)", security: "master" }, post: undefined },
  "/v1/model/info": { get: { summary: "The deployments the calling key may use (never a key)", security: "virtual" }, post: undefined },
  "/key/generate": { post: { summary: "Create a virtual key (honours Idempotency-Key)", security: "master", body: jsonSchema(generateKeySchema) }, get: undefined },
  "/key/update": { post: { summary: "Change a key's fields and limits", security: "master", body: jsonSchema(updateKeySchema) }, get: undefined },
  "/key/info": {
    get: { summary: "A key's record and live spend (a deprecated key: the active key's, with a marker)", security: "master", query: z.object({ key: z.string() }) },
    post: undefined,
  },
  "/key/list": { get: { summary: "Keys, paged", security: "master", query: listKeysQuerySchema }, post: undefined },
  "/key/delete": { post: { summary: "Delete keys, all or none", security: "master", body: jsonSchema(deleteKeysSchema) }, get: undefined },
  "/key/block": { post: { summary: "Block a key on every replica", security: "master", body: jsonSchema(keyRefSchema) }, get: undefined },
  "/key/unblock": { post: { summary: "Unblock a key", security: "master", body: jsonSchema(keyRefSchema) }, get: undefined },
  "/key/regenerate": {
    post: { summary: "Rotate the key named in the body, with an optional grace period", security: "master", body: jsonSchema(regenerateKeySchema) },
    get: undefined,
  },
  "/key/{key}/regenerate": {
    post: { summary: "Rotate a key, with an optional grace period (honours Idempotency-Key)", security: "master", body: jsonSchema(regenerateKeySchema), pathKey: true },
    get: undefined,
  },
  "/key/{key}/reset_spend": {
    post: { summary: "Reset the current period's spend on every replica", security: "master", body: jsonSchema(resetSpendSchema), pathKey: true },
    get: undefined,
  },
  "/key/end_grace": {
    post: {
      summary: "End the grace of every deprecated token of the key named in the body now (the current token keeps working)",
      security: "master",
      body: jsonSchema(keyRefSchema),
    },
    get: undefined,
  },
  "/key/{key}/end_grace": {
    post: { summary: "End the grace of every deprecated token of a key now, addressed by any of its tokens", security: "master", pathKey: true },
    get: undefined,
  },
  "/debug/coherence": { get: { summary: "This replica's coherence state and recent propagation lags", security: "master" }, post: undefined },
  "/debug/routing": { get: { summary: "Every deployment this replica serves and its cooldown, from the cluster's shared routing state", security: "master" }, post: undefined },
  "/health": {
    get: {
      summary: "Every deployment (or ?model='s) healthy or not, LiteLLM's shape: the cluster's last background checks, or checks run now",
      security: "master",
    },
    post: undefined,
  },
  "/health/liveliness": { get: { summary: "The process answers", security: "none" }, post: undefined },
  "/health/readiness": { get: { summary: "200 healthy or degraded (with breaker and listener detail); 503 only while shutting down", security: "none" }, post: undefined },
  "/metrics": { get: { summary: "Prometheus metrics", security: "metrics", answers: "text/plain" }, post: undefined },
  "/openapi.json": { get: { summary: "This document", security: "none" }, post: undefined },
  // The admin UI (admin_ui.mode: on), docs/admin-ui.md.
  "/ui": { get: { summary: "The admin UI's page (its modules are under /ui/app/)", security: "none", answers: "text/html" }, post: undefined },
  "/ui/vendor/{file}": {
    get: { summary: "A browser module the UI imports (preact.mjs, hooks.mjs, htm.mjs), from this installation", security: "none", answers: "text/javascript", pathParam: "file" },
    post: undefined,
  },
  "/ui/api/login": {
    post: {
      summary: "Exchange the master key for an admin UI session (an HttpOnly, SameSite=Strict cookie)",
      security: "none",
      body: jsonSchema(z.object({ master_key: z.string() })),
    },
    get: undefined,
  },
  "/ui/api/session": { get: { summary: "The session's CSRF token and end (401 when there is none)", security: "session" }, post: undefined },
  "/ui/api/logout": { post: { summary: "End the session on every replica", security: "master" }, get: undefined },
  "/ui/api/cluster": { get: { summary: "The replica registry: each replica's last applied event, listener, lags, breakers", security: "master" }, post: undefined },
};

// An admin UI session stands in for the master key on every admin route (a change also needs X-CSRF-Token).
const SECURITY = {
  master: [{ masterKey: [] }, { uiSession: [] }],
  session: [{ uiSession: [] }],
  virtual: [{ virtualKey: [] }],
  metrics: [{ metricsToken: [] }, { masterKey: [] }],
  none: [],
};

export function buildOpenApiDocument(version: string): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const [path, methods] of Object.entries(OPERATIONS)) {
    for (const method of ["get", "post"] as const) {
      const op = methods[method];
      if (!op) continue;
      const parameters: object[] = [];
      if (op.pathKey) parameters.push({ name: "key", in: "path", required: true, schema: { type: "string" }, description: "the key, as plaintext or its sha256 hash" });
      if (op.pathParam) parameters.push({ name: op.pathParam, in: "path", required: true, schema: { type: "string" } });
      if (op.query) {
        const schema = jsonSchema(op.query) as { properties?: Record<string, object>; required?: string[] };
        for (const [name, s] of Object.entries(schema.properties ?? {})) parameters.push({ name, in: "query", required: schema.required?.includes(name) ?? false, schema: s });
      }
      paths[path] ??= {};
      paths[path][method] = {
        summary: op.summary,
        security: SECURITY[op.security],
        ...(parameters.length > 0 ? { parameters } : {}),
        ...(op.body ? { requestBody: { required: true, content: { "application/json": { schema: op.body } } } } : {}),
        responses: {
          "200": { description: "OK", content: { [op.answers ?? "application/json"]: {} } },
          default: { description: "An error, OpenAI-shaped", content: { "application/json": { schema: errorBody } } },
        },
      };
    }
  }
  return {
    openapi: "3.1.0",
    info: { title: "Gatehouse", version, description: "OpenAI-compatible LLM gateway with LiteLLM-compatible virtual keys" },
    components: {
      securitySchemes: {
        masterKey: { type: "http", scheme: "bearer", description: "the master key" },
        virtualKey: { type: "http", scheme: "bearer", description: "a virtual key (sk-…)" },
        metricsToken: { type: "http", scheme: "bearer", description: "the metrics token" },
        uiSession: { type: "apiKey", in: "cookie", name: "gatehouse_session", description: "an admin UI session; a change made with it also needs X-CSRF-Token" },
      },
    },
    paths,
  };
}
