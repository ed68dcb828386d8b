import type { ModelDeployment } from "../config/settings.js";

/** Tokens of one request: reserved for before it is forwarded, or reported by upstream after. */
export interface TokenCount {
  /** Every prompt token, those read from or written to a prompt cache included. */
  promptTokens: number;
  completionTokens: number;
  /** Of promptTokens: read from the provider's prompt cache. */
  cacheReadTokens?: number;
  /** Of promptTokens: written to the provider's prompt cache (Anthropic's cache_creation_input_tokens). */
  cacheCreationTokens?: number;
}

/**
 * What a request costs, in the currency of the config's `input_cost_per_token` and
 * `output_cost_per_token` (LiteLLM's field names; usually USD).
 */
export interface Charge extends TokenCount {
  cost: number;
}

type Prices = Pick<ModelDeployment, "inputCostPerToken" | "outputCostPerToken"> & Partial<Pick<ModelDeployment, "cacheReadCostPerToken" | "cacheCreationCostPerToken">>;

/** Each kind of token at its own price: cached prompt tokens at the cache prices (the input price unless set). */
export function priceOf(deployment: Prices, tokens: TokenCount): Charge {
  const read = tokens.cacheReadTokens ?? 0;
  const written = tokens.cacheCreationTokens ?? 0;
  const plain = Math.max(0, tokens.promptTokens - read - written);
  const cost =
    plain * deployment.inputCostPerToken +
    read * (deployment.cacheReadCostPerToken ?? deployment.inputCostPerToken) +
    written * (deployment.cacheCreationCostPerToken ?? deployment.inputCostPerToken) +
    tokens.completionTokens * deployment.outputCostPerToken;
  // Written out rather than spread ({ ...tokens, cost }): a spread of an object this small was the dearest line
  // of a request's charge in the profile (docs/performance.md).
  const charge: Charge = { promptTokens: tokens.promptTokens, completionTokens: tokens.completionTokens, cost };
  if (tokens.cacheReadTokens !== undefined) charge.cacheReadTokens = tokens.cacheReadTokens;
  if (tokens.cacheCreationTokens !== undefined) charge.cacheCreationTokens = tokens.cacheCreationTokens;
  return charge;
}

/** Upper bound on one request's completions (`n`) that a client can make us reserve for. */
const MAX_CHOICES = 128;

/**
 * The worst case reserved before forwarding (docs/limits.md):
 * - prompt tokens: the request body's bytes / 4. Every prompt token needs at least one byte of JSON
 *   text; four bytes a token is the usual rule and over-counts JSON punctuation, which is the safe side.
 *   Reading the byte length costs nothing; tokenizing would cost more than the rest of the request path.
 * - completion tokens: the request's own limit (`max_completion_tokens`, else `max_tokens`; Anthropic's
 *   `max_tokens`; the Responses API's `max_output_tokens`), else the configured default, times `n`; none for
 *   embeddings (`output` null).
 */
export function worstCaseCharge(
  deployment: ModelDeployment,
  bodyBytes: number,
  output: { maxTokens: number | undefined; choices: unknown } | null,
  defaultMaxTokens: number,
): Charge {
  const promptTokens = Math.ceil(bodyBytes / 4);
  const completionTokens = output === null ? 0 : (output.maxTokens ?? defaultMaxTokens) * Math.min(positiveInt(output.choices) ?? 1, MAX_CHOICES);
  // Every prompt token at the dearest prompt price: a cache write may cost more than a plain input token.
  const promptPrice = Math.max(deployment.inputCostPerToken, deployment.cacheReadCostPerToken ?? 0, deployment.cacheCreationCostPerToken ?? 0);
  return { promptTokens, completionTokens, cost: promptTokens * promptPrice + completionTokens * deployment.outputCostPerToken };
}

/**
 * OpenAI's `usage` object, as upstream reported it (or as a translation wrote it); undefined when it is missing or
 * malformed. Cached prompt tokens: OpenAI's `prompt_tokens_details.cached_tokens`, or LiteLLM's
 * `cache_read_input_tokens`; cache writes: `cache_creation_input_tokens`. Neither may exceed the prompt.
 */
export function tokensFromUsage(usage: unknown): TokenCount | undefined {
  if (!usage || typeof usage !== "object") return undefined;
  const u = usage as {
    prompt_tokens?: unknown;
    completion_tokens?: unknown;
    total_tokens?: unknown;
    prompt_tokens_details?: { cached_tokens?: unknown } | null;
    cache_read_input_tokens?: unknown;
    cache_creation_input_tokens?: unknown;
  };
  const prompt = nonNegative(u.prompt_tokens);
  if (prompt === undefined) return undefined;
  const completion = nonNegative(u.completion_tokens) ?? Math.max(0, (nonNegative(u.total_tokens) ?? prompt) - prompt);
  const tokens: TokenCount = { promptTokens: prompt, completionTokens: completion };
  const read = nonNegative(u.cache_read_input_tokens) ?? nonNegative(u.prompt_tokens_details?.cached_tokens);
  const written = nonNegative(u.cache_creation_input_tokens);
  if (read) tokens.cacheReadTokens = Math.min(read, prompt);
  if (written) tokens.cacheCreationTokens = Math.min(written, prompt - (tokens.cacheReadTokens ?? 0));
  return tokens;
}

/**
 * Anthropic's `usage` (Messages API): `input_tokens` leaves out the prompt tokens read from and written to its
 * cache, which it counts apart; here they are part of the prompt, each kind kept for its price.
 */
export function tokensFromAnthropicUsage(usage: unknown): TokenCount | undefined {
  if (!usage || typeof usage !== "object") return undefined;
  const u = usage as { input_tokens?: unknown; output_tokens?: unknown; cache_read_input_tokens?: unknown; cache_creation_input_tokens?: unknown };
  const input = nonNegative(u.input_tokens);
  if (input === undefined) return undefined;
  const read = nonNegative(u.cache_read_input_tokens) ?? 0;
  const written = nonNegative(u.cache_creation_input_tokens) ?? 0;
  const tokens: TokenCount = { promptTokens: input + read + written, completionTokens: nonNegative(u.output_tokens) ?? 0 };
  if (read) tokens.cacheReadTokens = read;
  if (written) tokens.cacheCreationTokens = written;
  return tokens;
}

/** The Responses API's `usage`: `input_tokens` includes the cached ones (`input_tokens_details.cached_tokens`). */
export function tokensFromResponsesUsage(usage: unknown): TokenCount | undefined {
  if (!usage || typeof usage !== "object") return undefined;
  const u = usage as { input_tokens?: unknown; output_tokens?: unknown; input_tokens_details?: { cached_tokens?: unknown } | null };
  const input = nonNegative(u.input_tokens);
  if (input === undefined) return undefined;
  const tokens: TokenCount = { promptTokens: input, completionTokens: nonNegative(u.output_tokens) ?? 0 };
  const read = nonNegative(u.input_tokens_details?.cached_tokens);
  if (read) tokens.cacheReadTokens = Math.min(read, input);
  return tokens;
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined;
}

function nonNegative(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}
