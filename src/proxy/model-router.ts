import type { ModelDeployment } from "../config/settings.js";

/**
 * Maps the model a client asks for to one of its deployments. Several deployments with one
 * `model_name` are load-balanced round-robin, like LiteLLM's simple-shuffle without weights.
 */
export class ModelRouter {
  private readonly byName = new Map<string, ModelDeployment[]>();
  private readonly cursor = new Map<string, number>();

  constructor(deployments: ModelDeployment[]) {
    for (const d of deployments) {
      const list = this.byName.get(d.modelName) ?? [];
      list.push(d);
      this.byName.set(d.modelName, list);
    }
  }

  /** The deployment to use next for `model`, or undefined when no deployment serves it. */
  pick(model: string): ModelDeployment | undefined {
    const list = this.byName.get(model);
    if (!list) return undefined;
    const i = this.cursor.get(model) ?? 0;
    this.cursor.set(model, (i + 1) % list.length);
    return list[i % list.length];
  }

  modelNames(): ReadonlySet<string> {
    return new Set(this.byName.keys());
  }
}
