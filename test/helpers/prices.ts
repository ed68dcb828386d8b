/**
 * Prices that are powers of two, so sums of costs are exact and tests compare them with toBe; and a model that
 * charges them (mock provider: usage 1 completion token, prompt tokens by the request).
 */
export const INPUT_COST = 0.0009765625; // 2^-10
export const OUTPUT_COST = 0.001953125; // 2^-9

export const costOf = (usage: { prompt_tokens: number; completion_tokens: number }) => usage.prompt_tokens * INPUT_COST + usage.completion_tokens * OUTPUT_COST;

export function pricedModel(name: string) {
  return { model_name: name, litellm_params: { model: `mock/${name}`, input_cost_per_token: INPUT_COST, output_cost_per_token: OUTPUT_COST } };
}
