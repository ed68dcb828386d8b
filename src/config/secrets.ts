import { ConfigError, type SettingsContext, type UnsetVariable } from "./context.js";

/**
 * LiteLLM's `os.environ/VAR` indirection for secrets, so a config file can be committed without them.
 * A missing variable is a config error, not a silent empty key; under `config check` (without `--strict`) it is
 * listed in `unset` and the secret reads as "" (to be set where the gateway starts).
 */
export function resolveSecret(value: string, field: string, ctx: SettingsContext, unset: UnsetVariable[]): string {
  if (!value.startsWith("os.environ/")) return value;
  const name = value.slice("os.environ/".length);
  const resolved = ctx.env[name];
  if (!resolved) {
    if (ctx.envOptional) {
      unset.push({ variable: name, field });
      return "";
    }
    throw new ConfigError(`config ${ctx.source}: ${field}: environment variable ${name} is not set`);
  }
  return resolved;
}
