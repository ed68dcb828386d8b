/**
 * What every step of reading the config shares: the error it fails with, and how a problem names where it
 * came from (the file and line, or the environment variable), so an operator can go straight to it.
 */

export class ConfigError extends Error {}

export interface SettingsContext {
  source: string;
  env: NodeJS.ProcessEnv;
  portOverride?: number | undefined;
  /**
   * `config check` (unless `--strict`): an unset `os.environ/VAR` is listed in `Settings.unsetVariables`, to be set
   * where the gateway starts, not refused. The start, and `config check --strict`, refuse it.
   */
  envOptional?: boolean;
  /** The line of the config file a field (path) is on, when the config came from a file. */
  locate?: ((path: Array<string | number>) => number | undefined) | undefined;
}

/** "config FILE:LINE" for the field at `path` (without the line when unknown). */
export function where(ctx: SettingsContext, path: Array<string | number>): string {
  const line = ctx.locate?.(path);
  return `config ${ctx.source}${line ? `:${line}` : ""}`;
}

/** `model_list[0].litellm_params.model`: a field's path as the operator would write it. */
export function formatPath(p: readonly PropertyKey[]): string {
  if (p.length === 0) return "(top level)";
  return p.map((s, i) => (typeof s === "number" ? `[${s}]` : i === 0 ? String(s) : `.${String(s)}`)).join("");
}

/** An `os.environ/VAR` reference whose variable is not set here, and the field that makes it (config check). */
export interface UnsetVariable {
  variable: string;
  field: string;
}
