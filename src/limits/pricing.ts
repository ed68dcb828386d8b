import type { ModelDeployment } from "../config/settings.js";
import type { Endpoint } from "../proxy/provider.js";

/** Tokens of one request: reserved for before it is forwarded, or reported by upstream after. */
export interface TokenCount {
  promptTokens: number;
  completionTokens: number;
}

/**
 * What a request costs, in the currency of the config's `input_cost_per_token` and
 * `output_cost_per_token` (LiteLLM's field names; usually USD).
 */
export interface Charge extends TokenCount {
  cost: number;
}

export function priceOf(deployment: Pick<ModelDeployment, "inputCostPerToken" | "outputCostPerToken">, tokens: TokenCount): Charge {
  return { ...tokens, cost: tokens.promptTokens * deployment.inputCostPerToken + tokens.completionTokens * deployment.outputCostPerToken };
}

/** Upper bound on one request's completions (`n`) that a client can make us reserve for. */
const MAX_CHOICES = 128;

/**
 * The worst case reserved before forwarding (docs/limits.md):
 * - prompt tokens: the request body's bytes / 4. Every prompt token needs at least one byte of JSON
 *   text; four bytes a token is the usual rule and over-counts JSON punctuation, which is the safe side.
 *   Reading the byte length costs nothing; tokenizing would cost more than the rest of the request path.
 * - completion tokens: `max_completion_tokens`, else `max_tokens`, else the configured default, times `n`.
 */
export function worstCaseCharge(deployment: ModelDeployment, endpoint: Endpoint, body: Record<string, unknown>, bodyBytes: number, defaultMaxTokens: number): Charge {
  const promptTokens = Math.ceil(bodyBytes / 4);
  let completionTokens = 0;
  if (endpoint !== "embeddings") {
    const limit = positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens) ?? defaultMaxTokens;
    completionTokens = limit * Math.min(positiveInt(body.n) ?? 1, MAX_CHOICES);
  }
  return priceOf(deployment, { promptTokens, completionTokens });
}

/** OpenAI's `usage` object, as upstream reported it; undefined when it is missing or malformed. */
export function tokensFromUsage(usage: unknown): TokenCount | undefined {
  if (!usage || typeof usage !== "object") return undefined;
  const u = usage as { prompt_tokens?: unknown; completion_tokens?: unknown; total_tokens?: unknown };
  const prompt = nonNegative(u.prompt_tokens);
  if (prompt === undefined) return undefined;
  const completion = nonNegative(u.completion_tokens) ?? Math.max(0, (nonNegative(u.total_tokens) ?? prompt) - prompt);
  return { promptTokens: prompt, completionTokens: completion };
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined;
}

function nonNegative(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}
