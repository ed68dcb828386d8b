/**
 * Every `code` a client can find in an error body `{"error":{"message","type","param","code"}}`, once, with the
 * HTTP status and OpenAI `type` it is sent with and what it means to an operator (in the spirit of Fastify's
 * `createError("FST_ERR_…")`). The error classes (errors.ts) take status and type from here, and take only codes
 * listed here, so a code cannot leave with a status its row does not give. docs/errors.md is rendered from this
 * file (test/error-codes-doc.test.ts).
 *
 * A code is a contract: clients branch on it, and the spend log stores it. Once shipped it is never renamed and
 * never moves to another status; a new case gets a new code.
 */

export interface ErrorCodeRow {
  /** The HTTP status; "4xx" only for the one code whose status is the refusing library's own. */
  status: number | "4xx";
  /** OpenAI's `type` field. */
  type: string;
  /** What happened, for an operator reading a log or a client's report. */
  meaning: string;
  /**
   * The second status and type a code is sent with, and when: a few codes were sent two ways before this table
   * existed, and clients may branch on either pair, so both stay.
   */
  alsoSentAs?: { status: number; type: string; when: string };
}

export const ERROR_CODES = {
  // 400: the request is wrong, and sending it again will not help.
  bad_request: {
    status: 400,
    type: "invalid_request_error",
    meaning: "The body or query fails its route's schema (an unknown field, a wrong type, a value out of range); `param` names the field.",
  },
  invalid_json: { status: 400, type: "invalid_request_error", meaning: "The body is not valid JSON, or a tool call's `arguments` string is not." },
  unsupported_encoding: { status: 400, type: "invalid_request_error", meaning: "The body's Content-Encoding or charset is not one the gateway reads." },
  invalid_encoding: { status: 400, type: "invalid_request_error", meaning: "The body does not decode with the Content-Encoding it declares." },
  request_aborted: { status: 400, type: "invalid_request_error", meaning: "The client stopped sending the body before it was complete." },
  invalid_path: { status: 400, type: "invalid_request_error", meaning: "The request path is not validly percent-encoded." },
  duplicate_field: { status: 400, type: "invalid_request_error", meaning: "A field appears twice in a model request's JSON body; `param` names it." },
  unpaired_surrogate: {
    status: 400,
    type: "invalid_request_error",
    meaning: "An admin request's text holds a lone UTF-16 surrogate, which cannot be stored; `param` names the field.",
  },
  invalid_value: {
    status: 400,
    type: "invalid_request_error",
    meaning: "A field has the right type but a value the gateway or the provider cannot take (or Postgres cannot store); `param` names it.",
  },
  invalid_type: { status: 400, type: "invalid_request_error", meaning: "A field of a model request is missing or has the wrong JSON type; `param` names it." },
  empty_array: { status: 400, type: "invalid_request_error", meaning: "`messages` is an empty array." },
  empty_input: { status: 400, type: "invalid_request_error", meaning: "An embeddings request's `input` is empty." },
  missing_model: { status: 400, type: "invalid_request_error", meaning: "A model request has no `model`." },
  endpoint_not_supported: {
    status: 400,
    type: "invalid_request_error",
    meaning: "The model's provider does not serve this endpoint (e.g. embeddings from an Anthropic model).",
  },
  unsupported_parameter: {
    status: 400,
    type: "invalid_request_error",
    meaning: "A request parameter the model's provider cannot take; set `drop_params` on the deployment to have it dropped.",
  },
  unsupported_input: { status: 400, type: "invalid_request_error", meaning: "A Responses API input item this model's provider cannot take." },
  unsupported_content: { status: 400, type: "invalid_request_error", meaning: "A content part or block this model's provider cannot take." },
  unsupported_tool: { status: 400, type: "invalid_request_error", meaning: "A built-in or server tool that only its own provider runs, sent to another provider's model." },
  missing_enforced_params: {
    status: 400,
    type: "invalid_request_error",
    meaning: "The key's `enforced_params` name request parameters this request lacks; `param` is the first.",
  },
  mock_limit: { status: 400, type: "invalid_request_error", meaning: "A `mock/` model was asked for more embeddings than it returns." },
  invalid_idempotency_key: { status: 400, type: "invalid_request_error", meaning: "The Idempotency-Key header is not 1 to 255 visible ASCII characters." },
  invalid_date_range: { status: 400, type: "invalid_request_error", meaning: "A spend report's `end_date` is before `start_date`, or the range is too long." },
  invalid_grace_period: { status: 400, type: "invalid_request_error", meaning: "A key regeneration's `grace_period` is not a duration, or is longer than allowed." },
  model_not_in_team: { status: 400, type: "invalid_request_error", meaning: "A key asks for models its team does not allow." },
  model_not_allowed_for_user: { status: 400, type: "invalid_request_error", meaning: "A key asks for models its user may not use." },
  missing_model_id: { status: 400, type: "invalid_request_error", meaning: "/model/update was not told which model (`model_id` or `model_info.id`)." },
  invalid_api_key_reference: {
    status: 400,
    type: "invalid_request_error",
    meaning: "A model added through the API gives its api_key as an `os.environ/` reference, which only the config file may.",
  },
  unsupported_provider: { status: 400, type: "invalid_request_error", meaning: "A model added through the API names a provider the gateway does not speak." },
  missing_api_base: { status: 400, type: "invalid_request_error", meaning: "A model added through the API lacks a setting its provider needs (such as `api_base`)." },
  api_key_required: {
    status: 400,
    type: "invalid_request_error",
    meaning: "A model's `api_base` is changed without a new `api_key`: the stored key is never sent to a new host.",
  },
  unread_price: { status: 400, type: "invalid_request_error", meaning: "A model field looks like a price but is not one the gateway reads (a misspelling)." },
  budget_exceeded: {
    status: 400,
    type: "budget_exceeded",
    meaning: "A key, team member, user or team has spent its budget (LiteLLM's answer, 400 included); the message names which.",
  },

  // 401: who is asking is unknown, or may no longer ask.
  invalid_api_key: { status: 401, type: "authentication_error", meaning: "The bearer token is not a key this gateway knows." },
  missing_api_key: { status: 401, type: "authentication_error", meaning: "No `Authorization: Bearer …` header." },
  key_blocked: { status: 401, type: "authentication_error", meaning: "The key is blocked." },
  key_expired: { status: 401, type: "authentication_error", meaning: "The key is past its `expires`." },
  key_revoked: { status: 401, type: "authentication_error", meaning: "The key was regenerated and its grace period has ended." },
  team_blocked: { status: 401, type: "authentication_error", meaning: "The key's team is blocked." },
  team_deleted: { status: 401, type: "authentication_error", meaning: "The key's team was deleted." },
  user_deleted: {
    status: 401,
    type: "authentication_error",
    meaning: "The key's user was deleted.",
    alsoSentAs: { status: 400, type: "invalid_request_error", when: "a key is created for, or moved to, a deleted user" },
  },
  invalid_master_key: { status: 401, type: "authentication_error", meaning: "An admin route or the UI login was given a token that is not the master key." },
  missing_master_key: { status: 401, type: "authentication_error", meaning: "The UI login was sent without a master key." },
  invalid_metrics_token: { status: 401, type: "authentication_error", meaning: "/metrics was asked without the metrics token or the master key." },
  no_session: { status: 401, type: "authentication_error", meaning: "The admin UI asked for its session without a session cookie." },
  session_expired: { status: 401, type: "authentication_error", meaning: "The admin UI's session ended (expired, logged out, or the master key changed)." },

  // 403: who is asking is known, and may not do this.
  permission_denied: { status: 403, type: "permission_error", meaning: "Not allowed (the generic code; the gateway sends a more specific one where it can)." },
  not_admin: { status: 403, type: "permission_error", meaning: "A virtual key called an admin route, which needs the master key." },
  master_key_not_allowed: { status: 403, type: "permission_error", meaning: "The master key called a model while `server.master_key_on_proxy` is `forbid`." },
  csrf_token_mismatch: { status: 403, type: "permission_error", meaning: "A change made with an admin UI session lacks its X-CSRF-Token header, or has a wrong one." },
  model_not_allowed: { status: 403, type: "permission_error", meaning: "The key (or its team or user) may not use the model asked for." },

  // 404: what the request names does not exist.
  not_found: { status: 404, type: "not_found_error", meaning: "Not found (the generic code; the gateway sends a more specific one where it can)." },
  route_not_found: { status: 404, type: "not_found_error", meaning: "No route has this method and path." },
  key_not_found: { status: 404, type: "not_found_error", meaning: "No such key (or key alias); a bulk delete that names one deletes none." },
  team_not_found: {
    status: 404,
    type: "not_found_error",
    meaning: "No such team, or it was deleted.",
    alsoSentAs: { status: 400, type: "invalid_request_error", when: "a key is created in, or moved to, a team that does not exist" },
  },
  member_not_found: { status: 404, type: "not_found_error", meaning: "The user is not a member of this team." },
  user_not_found: { status: 404, type: "not_found_error", meaning: "No such user, or it was deleted." },
  model_not_found: {
    status: 404,
    type: "not_found_error",
    meaning: "No such model on this gateway (for a model request: or this key may not see it).",
    alsoSentAs: { status: 400, type: "invalid_request_error", when: "a key's `models` or `aliases` name a model this gateway does not serve" },
  },

  // 409: the request collides with what is stored, or with a change in flight.
  conflict: { status: 409, type: "invalid_request_error", meaning: "A conflict (the generic code; the gateway sends a more specific one where it can)." },
  key_exists: { status: 409, type: "invalid_request_error", meaning: "A key with this value already exists." },
  key_alias_exists: { status: 409, type: "invalid_request_error", meaning: "A key with this `key_alias` already exists." },
  team_exists: { status: 409, type: "invalid_request_error", meaning: "The `team_id` is taken (ids of deleted teams are never reused)." },
  team_alias_exists: { status: 409, type: "invalid_request_error", meaning: "A team with this `team_alias` already exists." },
  user_exists: { status: 409, type: "invalid_request_error", meaning: "The `user_id` is taken (ids of deleted users are never reused)." },
  key_already_rotated: {
    status: 409,
    type: "invalid_request_error",
    meaning: "The key named was already regenerated; regenerate the active key (the message names it).",
  },
  rotation_in_progress: { status: 409, type: "invalid_request_error", meaning: "Another regeneration of this key is in progress; retry." },
  rotation_conflict: { status: 409, type: "invalid_request_error", meaning: "The key changed while it was being regenerated; retry." },
  idempotency_key_reused: { status: 409, type: "invalid_request_error", meaning: "This Idempotency-Key was already used for a different request." },
  idempotency_result_unreadable: {
    status: 409,
    type: "invalid_request_error",
    meaning: "The stored result of this Idempotency-Key cannot be decrypted (was the master key changed?).",
  },

  // 413, and the 4xx a library chose.
  request_too_large: { status: 413, type: "invalid_request_error", meaning: "The body is larger than `gatehouse_settings.max_request_body_bytes`." },
  invalid_request: {
    status: "4xx",
    type: "invalid_request_error",
    meaning: "A library refused the request with its own 4xx status (e.g. sending a UI file: 404, 412, 416); the message is the gateway's.",
  },

  // 429: too much, too fast; the Retry-After header says when to come back.
  rate_limit_exceeded: { status: 429, type: "rate_limit_error", meaning: "A key, team member, user or team is at its requests-per-minute limit." },
  tokens_rate_limit_exceeded: { status: 429, type: "rate_limit_error", meaning: "A key, team member, user or team is at its tokens-per-minute limit." },
  parallel_request_limit_exceeded: { status: 429, type: "rate_limit_error", meaning: "A key, team member, user or team has `max_parallel_requests` requests in flight." },
  budget_reserved: { status: 429, type: "rate_limit_error", meaning: "The rest of a budget is reserved by requests in flight; retry when they finish." },
  no_deployment_available: {
    status: 429,
    type: "rate_limit_error",
    meaning: "Every deployment of the model is at its own rpm, tpm or max_parallel_requests limit.",
    alsoSentAs: { status: 503, type: "service_unavailable_error", when: "every deployment of the model is cooling down after repeated failures" },
  },
  deployment_at_capacity: {
    status: 429,
    type: "rate_limit_error",
    meaning: "One deployment is at its own limit; the request moves to the next (a client sees `no_deployment_available` instead).",
  },
  too_many_login_attempts: { status: 429, type: "rate_limit_error", meaning: "Too many failed admin UI logins from this client address." },
  upstream_rate_limited: { status: 429, type: "rate_limit_error", meaning: "An Anthropic model reported a rate limit in its stream." },

  // 500: a bug in the gateway; its log has the details.
  internal_error: { status: 500, type: "internal_error", meaning: "An error the gateway did not expect (a bug): its log has the stack, the client only this code." },

  // 502 and 504: the upstream provider failed.
  upstream_unreachable: { status: 502, type: "upstream_error", meaning: "The upstream model server could not be reached (the message has the network error's code)." },
  upstream_auth_failed: {
    status: 502,
    type: "upstream_error",
    meaning: "The upstream provider refused the gateway's own credentials for the model: fix the deployment's `api_key`.",
  },
  upstream_bad_response: {
    status: 502,
    type: "upstream_error",
    meaning: "The upstream answered with a status that is not relayed (3xx, 5xx), or with a body that is not what it should be.",
  },
  upstream_bad_tool_call: { status: 502, type: "upstream_error", meaning: "The model's tool call arguments are not a JSON object, so they cannot be translated." },
  upstream_answer_too_large: { status: 502, type: "upstream_error", meaning: "The upstream answer is too large to translate into the shape asked for." },
  upstream_stream_invalid: { status: 502, type: "upstream_error", meaning: "The upstream stream broke its protocol (a chunk that is not JSON, events out of order)." },
  upstream_stream_failed: { status: 502, type: "upstream_error", meaning: "The upstream stream failed partway, or reported an error chunk." },
  upstream_connect_timeout: { status: 504, type: "timeout_error", meaning: "Connecting to the upstream model server timed out." },
  upstream_timeout: { status: 504, type: "timeout_error", meaning: "The upstream model server did not answer in time." },

  // 503: the gateway cannot answer right now; retry after Retry-After.
  upstream_overloaded: { status: 503, type: "upstream_error", meaning: "An Anthropic model reported it is overloaded (529, or in its stream)." },
  service_unavailable: {
    status: 503,
    type: "service_unavailable_error",
    meaning: "Unavailable right now (the generic code; the gateway sends a more specific one where it can).",
  },
  postgres_unavailable: {
    status: 503,
    type: "service_unavailable_error",
    meaning: "Postgres is not answering (its circuit breaker is open, or a call timed out); also when a COMMIT's outcome is unknown.",
  },
  redis_unavailable: { status: 503, type: "service_unavailable_error", meaning: "Redis is not answering (its circuit breaker is open, or a call timed out)." },
  key_store_unavailable: {
    status: 503,
    type: "service_unavailable_error",
    meaning: "The key could not be verified: Postgres is unreachable and no copy of the key can be vouched for.",
  },
  key_changing: { status: 503, type: "service_unavailable_error", meaning: "The key was changed again and again while it was being read; retry." },
  change_contended: {
    status: 503,
    type: "service_unavailable_error",
    meaning: "The change met concurrent changes of the same rows (a deadlock or a serialization failure) until its retries ran out; nothing was written, retry.",
  },
  limits_unavailable: {
    status: 503,
    type: "service_unavailable_error",
    meaning: "Budgets and rate limits cannot be checked while Redis is unreachable (`limits.redis_unavailable: fail_closed`).",
  },
  limits_busy: { status: 503, type: "service_unavailable_error", meaning: "The spend ledger kept being reset while the request was admitted; retry." },
  model_store_unavailable: {
    status: 503,
    type: "service_unavailable_error",
    meaning: "The model is not in the config file, and the database's models cannot be vouched for while it is unreachable.",
  },
} as const satisfies Record<string, ErrorCodeRow>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The upstream statuses the relay passes on to the client as they are (proxy/relay.ts): about the client's request. */
export const RELAYED_STATUSES = [400, 404, 409, 413, 422, 429] as const;
export type RelayedStatus = (typeof RELAYED_STATUSES)[number];

export function isRelayedStatus(status: number): status is RelayedStatus {
  return (RELAYED_STATUSES as readonly number[]).includes(status);
}

/** A kind of answer passed on from upstream; its fields are markdown, shown as they are in docs/errors.md. */
export interface RelayedCodeRow {
  status: string;
  type: string;
  meaning: string;
}

/**
 * Codes that are the upstream provider's, not the gateway's: listed as categories, since the provider decides them.
 * Each is keyed by how it reads in a body (a concrete code, or a placeholder in angle brackets).
 */
export const RELAYED_CODES = {
  "<upstream's code>": {
    status: "upstream's: 400, 404, 409, 413, 422 or 429",
    type: "upstream's `type`, or `upstream_error` when it gives none",
    meaning:
      "The upstream refused the request itself, and its status, message, `type`, `param` and `code` are relayed (e.g. `context_length_exceeded`, Azure's `content_filter`; an Anthropic model's code is its error type). A 429 keeps its Retry-After.",
  },
  upstream_400: { status: "400", type: "upstream's `type`, or `upstream_error` when it gives none", meaning: "As above, when the upstream's 400 answer gives no code of its own." },
  upstream_404: { status: "404", type: "upstream's `type`, or `upstream_error` when it gives none", meaning: "As above, when the upstream's 404 answer gives no code of its own." },
  upstream_409: { status: "409", type: "upstream's `type`, or `upstream_error` when it gives none", meaning: "As above, when the upstream's 409 answer gives no code of its own." },
  upstream_413: { status: "413", type: "upstream's `type`, or `upstream_error` when it gives none", meaning: "As above, when the upstream's 413 answer gives no code of its own." },
  upstream_422: { status: "422", type: "upstream's `type`, or `upstream_error` when it gives none", meaning: "As above, when the upstream's 422 answer gives no code of its own." },
  upstream_429: { status: "429", type: "upstream's `type`, or `upstream_error` when it gives none", meaning: "As above, when the upstream's 429 answer gives no code of its own." },
  "upstream_<Anthropic error type>": {
    status: "502",
    type: "`upstream_error`",
    meaning:
      "An Anthropic model reported an error in its stream, other than overloaded or rate limited: Anthropic's type after `upstream_` (`upstream_api_error` when it gives none).",
  },
} as const satisfies Record<string, RelayedCodeRow>;

export type RelayedCode = keyof typeof RELAYED_CODES;

/** The code a relayed answer without a code of its own gets (each must be a row above: errors.ts takes only RelayedCode). */
export type RelayedStatusCode = `upstream_${RelayedStatus}`;
