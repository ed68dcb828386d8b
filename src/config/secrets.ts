import { ConfigError, type SettingsContext } from "./context.js";

/**
 * LiteLLM's `os.environ/VAR` indirection for secrets, so a config file can be committed without them.
 * A missing variable is a config error, not a silent empty key; under `config check --env-optional` it is
 * a warning and the secret reads as "" (set where the gateway starts).
 */
export function resolveSecret(value: string, field: string, ctx: SettingsContext, warnings: string[]): string {
  if (!value.startsWith("os.environ/")) return value;
  const name = value.slice("os.environ/".length);
  const resolved = ctx.env[name];
  if (!resolved) {
    if (ctx.envOptional) {
      warnings.push(`${field}: environment variable ${name} is not set here; it must be set where the gateway starts`);
      return "";
    }
    throw new ConfigError(`config ${ctx.source}: ${field}: environment variable ${name} is not set`);
  }
  return resolved;
}
