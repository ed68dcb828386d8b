import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ConfigError, loadSettings, settingLeaves, settingsFromConfig, settingVariables, type Settings } from "../src/config/settings.js";
import { parseDuration } from "../src/config/duration.js";
import { packageRoot } from "../src/paths.js";

const run = promisify(execFile);
const cli = path.join(packageRoot, "dist", "cli.js");

function writeConfig(text: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "gh-config-")), "config.yaml");
  writeFileSync(file, text);
  return file;
}

describe("config: LiteLLM's model_list, validated at start", () => {
  it("reads a LiteLLM config with os.environ secrets, pricing and several deployments per model", () => {
    const file = writeConfig(`
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: https://api.openai.com/v1/
      api_key: os.environ/OPENAI_KEY_FOR_TEST
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
      rpm: 100
  - model_name: gpt-4o
    litellm_params: { model: openai/gpt-4o, api_base: "http://127.0.0.1:9999/v1" }
litellm_settings:
  drop_params: true
`);
    const s = loadSettings({ file, env: { OPENAI_KEY_FOR_TEST: "sk-upstream" } });
    expect(s.models).toHaveLength(2);
    expect(s.models[0]).toMatchObject({
      modelName: "gpt-4o",
      provider: "openai",
      upstreamModel: "gpt-4o",
      apiBase: "https://api.openai.com/v1",
      apiKey: "sk-upstream",
      inputCostPerToken: 0.0000025,
      outputCostPerToken: 0.00001,
      rpm: 100,
    });
    expect(s.warnings.join("\n")).not.toContain("rpm");
    expect(s.warnings.join("\n")).toContain("litellm_settings");
  });

  const ONE_MODEL = { model_list: [{ model_name: "m", litellm_params: { model: "mock/m" } }] };

  it("takes infrastructure settings from the environment", () => {
    const s = settingsFromConfig(ONE_MODEL, {
      source: "t",
      env: { DATABASE_URL: "postgres://x/y", REDIS_URL: "redis://r:1", PORT: "5001", GATEHOUSE_MASTER_KEY: "sk-master-123" },
    });
    expect(s).toMatchObject({ databaseUrl: "postgres://x/y", databaseListenUrl: "postgres://x/y", redisUrl: "redis://r:1", port: 5001, masterKey: "sk-master-123" });
    expect(settingsFromConfig(ONE_MODEL, { source: "t", env: {} }).port).toBe(4000);
  });

  it("every setting has an environment variable that overrides the file, and is in docs/configuration.md", () => {
    const doc = readFileSync(path.join(packageRoot, "docs", "configuration.md"), "utf8");
    const leaves = settingLeaves();
    expect(leaves.length).toBeGreaterThan(25);
    for (const leaf of leaves) {
      const row = doc.split("\n").find((l) => l.startsWith(`| \`${leaf.path.join(".")}\` |`));
      expect(row, `docs/configuration.md has a row for ${leaf.path.join(".")}`).toBeDefined();
      expect(row).toContain(`\`${leaf.env}\``);
      // The variable is read: a value the schema refuses fails the start, naming the variable.
      const bad = leaf.kind === "string" ? undefined : "not-valid";
      if (bad) expect(() => settingsFromConfig({}, { source: "t", env: { [leaf.env]: bad } }), leaf.env).toThrowError(new RegExp(leaf.env));
    }
  });

  /** The cells of the settings table's row for a leaf: setting, variables, default, meaning. */
  const docRow = (leafPath: string[]) => {
    const doc = readFileSync(path.join(packageRoot, "docs", "configuration.md"), "utf8");
    const row = doc.split("\n").find((l) => l.startsWith(`| \`${leafPath.join(".")}\` |`));
    return row?.split(" | ").map((cell) => cell.replace(/^\| |`| \|$/g, "").trim());
  };
  // Where "unset" means something no single default can say (no database_url: embedded), which docs explain.
  const UNSET_HAS_A_MEANING = [
    "database_url",
    "database_listen_url",
    "redis_url",
    "redis_sentinels",
    "redis_sentinel_name",
    "redis_sentinel_password",
    "metrics.token",
    "limits.replica_count",
    "credentials.salt_key",
    "credentials.previous_salt_key",
    "alerting.webhook_url",
    "alerting.webhook_secret",
    "admin_ui.trusted_proxies",
  ];

  it("every setting in the schema has a default (the one documented) and a variable named by the rule", () => {
    for (const leaf of settingLeaves()) {
      const name = leaf.path.join(".");
      expect(leaf.env).toBe(`GATEHOUSE_${leaf.path.join("_").toUpperCase()}`);
      const [, variables, documentedDefault] = docRow(leaf.path) ?? [];
      expect(variables?.split(", ").sort(), `docs/configuration.md lists the variables of ${name}`).toEqual([leaf.env, ...leaf.aliases].sort());
      if (UNSET_HAS_A_MEANING.includes(name)) {
        expect(leaf.default, name).toBeUndefined();
        expect(documentedDefault, `docs say what an unset ${name} means`).toBeTruthy();
      } else {
        expect(leaf.default, `${name} has a default`).toBeDefined();
        expect(documentedDefault, `docs/configuration.md shows the default of ${name}`).toBe(String(leaf.default));
      }
    }
  });

  it("every variable, older names included, is read into its setting and checked by the same schema", () => {
    const INVALID: Record<string, string> = { number: "not-a-number", enum: "not-an-option", duration: "soon" };
    const INVALID_TEXT: Record<string, string> = { redis_prefix: "no spaces", "metrics.token": "too-short", "admin_ui.trusted_proxies": "10.0.0.0/33" };
    for (const leaf of settingLeaves()) {
      const name = leaf.path.join(".");
      for (const variable of [...leaf.aliases, leaf.env]) {
        // A number lands, as a number, in the field of the same name in camelCase.
        if (leaf.kind === "number" && typeof leaf.default === "number") {
          const s = settingsFromConfig(ONE_MODEL, { source: "t", env: { [variable]: String(leaf.default + 1) } });
          const value = leaf.path.reduce<any>((node, key) => node?.[key.replace(/_(.)/g, (_, c: string) => c.toUpperCase())], s as Settings);
          expect(value, variable).toBe(leaf.default + 1);
        }
        const bad = INVALID[leaf.kind] ?? INVALID_TEXT[name];
        if (bad === undefined) continue; // free text: any value is valid
        expect(() => settingsFromConfig(ONE_MODEL, { source: "t", env: { [variable]: bad } }), variable).toThrowError(
          new RegExp(`^environment variable ${variable} \\(gatehouse_settings\\.${name.replaceAll(".", "\\.")}\\): `, "m"),
        );
      }
    }
  });

  it("older variable names keep working, and win over the names the rule gives", () => {
    expect(settingVariables()).toEqual(
      expect.arrayContaining([
        "PORT",
        "DATABASE_URL",
        "DATABASE_LISTEN_URL",
        "REDIS_URL",
        "GATEHOUSE_MASTER_KEY",
        "GATEHOUSE_DEFAULT_GRACE_PERIOD",
        "GATEHOUSE_MAX_GRACE_PERIOD",
        "GATEHOUSE_DRAIN_TIMEOUT_MS",
      ]),
    );
    const s = settingsFromConfig(ONE_MODEL, {
      source: "t",
      env: {
        PORT: "81",
        GATEHOUSE_PORT: "82",
        DATABASE_URL: "postgres://a/a",
        GATEHOUSE_DATABASE_URL: "postgres://b/b",
        GATEHOUSE_DRAIN_TIMEOUT_MS: "5",
        GATEHOUSE_SHUTDOWN_DRAIN_TIMEOUT_MS: "6",
        GATEHOUSE_MAX_GRACE_PERIOD: "1d",
        GATEHOUSE_ROTATION_MAX_GRACE_PERIOD: "2d",
      },
    });
    expect(s).toMatchObject({ port: 81, databaseUrl: "postgres://a/a", shutdown: { drainTimeoutMs: 5 }, rotation: { maxGraceMs: 86_400_000 } });
    // An empty variable is unset, except an empty Redis prefix, which is a real choice.
    expect(settingsFromConfig(ONE_MODEL, { source: "t", env: { GATEHOUSE_DATA_DIR: "", GATEHOUSE_REDIS_PREFIX: "" } })).toMatchObject({ dataDir: ".gatehouse", redisPrefix: "" });
  });

  it("environment variables win over the file, for nested settings too", () => {
    const file = { ...ONE_MODEL, gatehouse_settings: { auth: { l1_max_entries: 10, negative_ttl_ms: 5 }, limits: { redis_unavailable: "fail_open_local" } } };
    const s = settingsFromConfig(file, {
      source: "t",
      env: {
        GATEHOUSE_AUTH_L1_MAX_ENTRIES: "77",
        GATEHOUSE_LIMITS_REDIS_UNAVAILABLE: "fail_closed",
        GATEHOUSE_UPSTREAM_READ_TIMEOUT_MS: "1234",
        GATEHOUSE_METRICS_TOKEN: "t".repeat(16),
        GATEHOUSE_ROTATION_MAX_GRACE_PERIOD: "2d",
      },
    });
    expect(s.auth).toMatchObject({ l1MaxEntries: 77, negativeTtlMs: 5 });
    expect(s.limits.redisUnavailable).toBe("fail_closed");
    expect(s.upstream.readTimeoutMs).toBe(1234);
    expect(s.metricsToken).toBe("t".repeat(16));
    expect(s.rotation.maxGraceMs).toBe(2 * 86_400_000);
    expect(() => settingsFromConfig({}, { source: "t", env: { GATEHOUSE_AUTH_L1_MAX_ENTRIES: "-3" } })).toThrowError(
      /GATEHOUSE_AUTH_L1_MAX_ENTRIES \(gatehouse_settings\.auth\.l1_max_entries\)/,
    );
  });

  it.each([
    ["model_list:\n  - model_name: a\n    litellm_params: { model: 'gpt 4o' }", "model_list[0].litellm_params.model"],
    ["model_list: []", "model_list: no models"],
    ["model_list:\n  - model_name: a\n    litellm_params: { model: bedrock/claude }", "model_list[0].litellm_params.model"],
    ["model_list:\n  - model_name: a\n    litellm_params: { model: azure/x }", "model_list[0].litellm_params.api_base"],
    ["model_list:\n  - model_name: a\n    litellm_params: { model: openai/x, api_base: 'http://h/v1', api_key: os.environ/NOT_SET_ANYWHERE }", "NOT_SET_ANYWHERE"],
    ["model_list:\n  - model_name: a\n    litellm_params: { model: mock/x, input_cost_per_token: -1 }", "model_list[0].litellm_params.input_cost_per_token"],
    ["gatehouse_settings: { max_request_body_bytes: lots }", "gatehouse_settings.max_request_body_bytes"],
    ["model_lst: []", "model_lst"],
    ['model_list:\n  - model_name: "x\\ud800"\n    litellm_params: { model: mock/x }', "model_list[0].model_name: must not contain an unpaired UTF-16 surrogate"],
    ["model_list: [", "not valid YAML"],
  ])("a bad config fails with a message naming the field (%#)", (text, field) => {
    const file = writeConfig(text);
    expect(() => loadSettings({ file, env: {} })).toThrowError(ConfigError);
    expect(() => loadSettings({ file, env: {} })).toThrowError(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*${field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  });

  it("`gatehouse config check` validates without starting", async () => {
    const good = writeConfig("model_list:\n  - model_name: m\n    litellm_params: { model: mock/m }\n");
    const ok = await run(process.execPath, [cli, "config", "check", good]);
    expect(ok.stdout).toContain("ok (1 model deployments)");
    const bad = writeConfig("model_list:\n  - model_name: m\n    litellm_params: { model: 'no pe' }\n");
    const failed = await run(process.execPath, [cli, "config", "check", bad]).catch((e) => e);
    expect(failed.code).toBe(78);
    expect(failed.stderr).toContain("model_list[0].litellm_params.model");
  });

  describe("`gatehouse config check` on a file whose os.environ/ variables are not set here", () => {
    // Only PATH: none of the file's variables is set, as on the machine where a config is written.
    const env = { PATH: process.env.PATH ?? "" };
    const example = path.join(packageRoot, "docs", "config.example.yaml");
    const twoKeys = writeConfig(
      "model_list:\n  - model_name: a\n    litellm_params: { model: openai/a, api_key: os.environ/GH_TEST_KEY_A }\n" +
        "  - model_name: b\n    litellm_params: { model: openai/b, api_key: os.environ/GH_TEST_KEY_A }\n" +
        "general_settings: { master_key: os.environ/GH_TEST_MASTER }\n",
    );

    it("as the README shows it: ok, exit 0, each unset variable listed once with the fields that read it", async () => {
      const ok = await run(process.execPath, [cli, "config", "check", example], { env });
      expect(ok.stdout).toContain("ok (3 model deployments)");
      expect(ok.stdout).toMatch(/set before starting[^\n]*\n {2}OPENAI_API_KEY +model_list\[1\]\.litellm_params\.api_key\n/);
      expect(ok.stderr).not.toContain("OPENAI_API_KEY");
      const listed = await run(process.execPath, [cli, "config", "check", twoKeys], { env });
      expect(listed.stdout).toContain("GH_TEST_KEY_A   model_list[0].litellm_params.api_key, model_list[1].litellm_params.api_key\n");
      expect(listed.stdout).toContain("GH_TEST_MASTER  general_settings.master_key\n");
      // Set, they are not listed.
      const set = await run(process.execPath, [cli, "config", "check", twoKeys], { env: { ...env, GH_TEST_KEY_A: "sk-a", GH_TEST_MASTER: "sk-master-123" } });
      expect(set.stdout).not.toContain("set before starting");
    });

    it("--strict refuses them as the start does (exit 78, for CI); --env-optional, what the default now does, still works", async () => {
      const strict = await run(process.execPath, [cli, "config", "check", example, "--strict"], { env }).catch((e) => e);
      expect(strict.code).toBe(78);
      expect(strict.stderr).toContain("model_list[1].litellm_params.api_key: environment variable OPENAI_API_KEY is not set");
      const strictSet = await run(process.execPath, [cli, "config", "check", twoKeys, "--strict"], { env: { ...env, GH_TEST_KEY_A: "sk-a", GH_TEST_MASTER: "sk-master-123" } });
      expect(strictSet.stdout).toContain("ok (2 model deployments)");
      const legacy = await run(process.execPath, [cli, "config", "check", example, "--env-optional"], { env });
      expect(legacy.stdout).toContain("ok (3 model deployments)");
      const both = await run(process.execPath, [cli, "config", "check", example, "--strict", "--env-optional"], { env }).catch((e) => e);
      expect(both.code).toBe(2);
    });

    it("any other problem still fails the check (exit 78), naming it", async () => {
      const bad = writeConfig("model_list:\n  - model_name: a\n    litellm_params: { model: openai/a, api_key: os.environ/GH_TEST_KEY_A, input_cost_per_tokn: 1 }\n");
      const failed = await run(process.execPath, [cli, "config", "check", bad], { env }).catch((e) => e);
      expect(failed.code).toBe(78);
      expect(failed.stderr).toContain("model_list[0].litellm_params.input_cost_per_tokn");
    });
  });
});

describe("npm start", () => {
  it("runs `gatehouse start` with a config that exists (the built-in one unless a file is named)", () => {
    const pkg = JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8"));
    const start: string = pkg.scripts.start;
    expect(start).toMatch(/dist\/cli\.js start/);
    const config = /--config\s+(\S+)/.exec(start)?.[1];
    if (config) expect(existsSync(path.join(packageRoot, config))).toBe(true);
    expect(pkg.bin.gatehouse).toBe("dist/cli.js");
    for (const f of pkg.files) expect(existsSync(path.join(packageRoot, f)), f).toBe(true);
  });
});

describe("durations", () => {
  it("parses Ns|Nm|Nh|Nd|Nw strictly", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("30m")).toBe(1_800_000);
    expect(parseDuration("2h")).toBe(7_200_000);
    expect(parseDuration("30d")).toBe(2_592_000_000);
    expect(parseDuration("1w")).toBe(604_800_000);
    for (const bad of ["", "1", "h", "-1h", "1.5h", "1 h", "1H", "10y", "1h30m"]) expect(() => parseDuration(bad)).toThrow();
    expect(() => parseDuration("1w", ["s", "m", "h", "d"])).toThrow(/unit/);
  });
});

describe("config problems an operator meets first", () => {
  it("a bare OpenAI model name is an OpenAI model on OpenAI's API, as in LiteLLM", () => {
    const s = settingsFromConfig({ model_list: [{ model_name: "gpt-4o", litellm_params: { model: "gpt-4o", api_key: "sk-x" } }] }, { source: "t", env: {} });
    expect(s.models[0]).toMatchObject({ provider: "openai", upstreamModel: "gpt-4o", apiBase: "https://api.openai.com/v1" });
  });

  it("a model without api_base goes where OPENAI_API_BASE or ANTHROPIC_API_BASE point, as LiteLLM reads them; only OpenAI's API speaks the Responses API", () => {
    const models = [
      { model_name: "bare", litellm_params: { model: "gpt-4o", api_key: "sk-x" } },
      { model_name: "openai-own", litellm_params: { model: "openai/gpt-4o", api_base: "https://api.openai.com/v1/", api_key: "sk-x" } },
      { model_name: "compatible", litellm_params: { model: "openai/llama", api_base: "http://vllm.internal:8000/v1" } },
      { model_name: "claude", litellm_params: { model: "anthropic/claude-sonnet-4-5", api_key: "sk-ant-x" } },
    ];
    const plain = settingsFromConfig({ model_list: models }, { source: "t", env: {} }).models;
    expect(plain.map((m) => [m.apiBase, m.speaksResponses])).toEqual([
      ["https://api.openai.com/v1", true],
      ["https://api.openai.com/v1", true],
      ["http://vllm.internal:8000/v1", false],
      ["https://api.anthropic.com", false],
    ]);
    const env = { OPENAI_API_BASE: "https://openai-proxy.corp.example/v1", ANTHROPIC_API_BASE: "https://anthropic-proxy.corp.example" };
    const routed = settingsFromConfig({ model_list: models }, { source: "t", env });
    expect(routed.models.map((m) => [m.apiBase, m.speaksResponses])).toEqual([
      ["https://openai-proxy.corp.example/v1", true],
      ["https://api.openai.com/v1", true],
      ["http://vllm.internal:8000/v1", false],
      ["https://anthropic-proxy.corp.example", false],
    ]);
    expect(routed.providerBases).toEqual({ openai: env.OPENAI_API_BASE, anthropic: env.ANTHROPIC_API_BASE });
    // The clients' own variables are not read: they may point at Gatehouse itself.
    expect(settingsFromConfig({ model_list: models }, { source: "t", env: { OPENAI_BASE_URL: "http://127.0.0.1:4000/v1" } }).models[0]!.apiBase).toBe("https://api.openai.com/v1");
  });

  it("OPENAI_API_BASE and ANTHROPIC_API_BASE are checked as an api_base is, and may not name this gateway", () => {
    const config = { model_list: [{ model_name: "m", litellm_params: { model: "mock/m" } }] };
    const problems = (env: Record<string, string>) => {
      try {
        settingsFromConfig(config, { source: "t", env: { PORT: "4100", ...env } });
        return "";
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(problems({ OPENAI_API_BASE: "api.openai.com/v1" })).toMatch(/environment variable OPENAI_API_BASE: not a URL/);
    expect(problems({ OPENAI_API_BASE: "https://user:secret@proxy.example/v1" })).toMatch(/OPENAI_API_BASE: must not hold credentials/);
    expect(problems({ OPENAI_API_BASE: "https://user:secret@proxy.example/v1" })).not.toContain("secret");
    expect(problems({ ANTHROPIC_API_BASE: "ftp://proxy.example" })).toMatch(/ANTHROPIC_API_BASE: must be an http/);
    expect(problems({ OPENAI_API_BASE: "http://127.0.0.1:4100/v1" })).toMatch(/OPENAI_API_BASE: names this gateway itself \(port 4100\)/);
    expect(problems({ OPENAI_API_BASE: "http://127.0.0.1:4101/v1" })).toBe("");
  });

  it("every problem is reported at once, each naming its real source", () => {
    const config = {
      model_list: [
        { model_name: "a", litellm_params: { model: "azure/x" } },
        { model_name: "b", litellm_params: { model: "mock/b", api_key: "os.environ/NOT_SET_ANYWHERE" } },
      ],
    };
    let message = "";
    try {
      settingsFromConfig(config, { source: "f.yaml", env: { LOG_FORMAT: "bogus", GATEHOUSE_MASTER_KEY: "abc" } });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain("f.yaml: model_list[0].litellm_params.api_base");
    expect(message).toContain("NOT_SET_ANYWHERE");
    expect(message).toContain('environment variable LOG_FORMAT: "bogus"');
    expect(message).toContain("environment variable GATEHOUSE_MASTER_KEY: must be at least 8 characters");
    expect(message).not.toContain("built-in default config");
  });

  it("an unknown field in a model entry is named in a warning", () => {
    const s = settingsFromConfig({ model_list: [{ model_name: "m", litellm_params: { model: "mock/m" }, modle_info: {} }] }, { source: "t", env: {} });
    expect(s.warnings.join("\n")).toContain("unknown field(s) modle_info");
  });

  it("the repository's own example passes `config check` as shipped, its unset variables listed apart", () => {
    const s = loadSettings({ file: path.join(packageRoot, "docs", "config.example.yaml"), env: {}, envOptional: true });
    expect(s.models.length).toBeGreaterThan(0);
    expect(s.unsetVariables).toContainEqual({ variable: "OPENAI_API_KEY", field: "model_list[1].litellm_params.api_key" });
    expect(s.warnings.join("\n")).not.toContain("OPENAI_API_KEY");
  });
});

describe("an upstream key goes in api_key, never in api_base", () => {
  it.each([
    ["https://user:hunter2-in-url@example.com/v1", "user:password@"],
    ["https://hunter2-in-url@example.com/v1", "user:password@"],
    ["https://example.com/v1?key=hunter2-in-url", "query string"],
    ["https://example.com/openai?api-key=hunter2-in-url&api-version=2024-06-01", "query string"],
    ["https://example.com/v1#hunter2-in-url", "fragment"],
  ])("%s is a config error naming the field and api_key, without quoting the URL", (apiBase, what) => {
    const file = writeConfig(`model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      api_base: "${apiBase}"\n`);
    let message = "";
    try {
      loadSettings({ file, env: {} });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain(`${file}:5: model_list[0].litellm_params.api_base: must not`);
    expect(message).toContain(what);
    expect(message).toContain("api_key");
    expect(message).not.toContain("hunter2");
  });

  it("an api_base of origin and path is read as it was", () => {
    const s = settingsFromConfig(
      { model_list: [{ model_name: "m", litellm_params: { model: "openai/m", api_base: "https://example.com:8443/openai/v1/" } }] },
      { source: "t", env: {} },
    );
    expect(s.models[0]!.apiBase).toBe("https://example.com:8443/openai/v1");
  });
});

describe("a price Gatehouse does not read is an error, never a free model", () => {
  function problem(entry: string): string {
    const file = writeConfig(`model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n${entry}`);
    try {
      loadSettings({ file, env: {} });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message.replaceAll(file, "FILE");
    }
    throw new Error("the config was accepted");
  }

  it("a misspelt price names the field, its line and the price it meant", () => {
    const message = problem("      input_cost_per_tokn: 0.000001\n      output_cost_per_token: 0.000002\n");
    expect(message).toContain("FILE:5: model_list[0].litellm_params.input_cost_per_tokn: not a price Gatehouse reads, so the model would be served free");
    expect(message).toContain("did you mean litellm_params.input_cost_per_token?");
  });

  it("every unread price of an entry is named at once: LiteLLM's other kinds, and prices put in model_info", () => {
    const message = problem("      input_cost_per_second: 0.0004\n      OutputPrice: 1\n    model_info:\n      output_cost_per_token: 0.000002\n");
    expect(message).toContain("FILE:5: model_list[0].litellm_params.input_cost_per_second: not a price Gatehouse reads");
    expect(message).toContain("(Gatehouse prices by input_cost_per_token, output_cost_per_token, cache_read_input_token_cost, cache_creation_input_token_cost)");
    expect(message).toContain("FILE:6: model_list[0].litellm_params.OutputPrice: not a price Gatehouse reads");
    expect(message).toContain(
      "FILE:8: model_list[0].model_info.output_cost_per_token: prices are read from litellm_params, not model_info: move it to litellm_params.output_cost_per_token",
    );
  });

  it("other unknown fields are still only reported, and a price field left empty is no price", () => {
    const file = writeConfig("model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      stream_timeout: 5\n      input_cost_per_second:\n");
    const s = loadSettings({ file, env: {} });
    expect(s.models[0]!.inputCostPerToken).toBe(0);
    expect(s.warnings.join("\n")).toContain("stream_timeout, input_cost_per_second are not used by Gatehouse and were ignored");
  });
});

describe("config messages name the line", () => {
  it("a problem in a file names the file and the line of the field", () => {
    const file = writeConfig("model_list:\n  - model_name: a\n    litellm_params:\n      model: azure/x\n  - model_name: b\n    litellm_params:\n      model: weird/y\n");
    let message = "";
    try {
      loadSettings({ file, env: {} });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(`${file}:4: model_list[0].litellm_params.api_base`); // the first line of litellm_params
    expect(message).toContain(`${file}:7: model_list[1].litellm_params.model`);
  });
});

describe("router_settings (LiteLLM's), honoured or refused by name", () => {
  const base = { model_list: [{ model_name: "m", litellm_params: { model: "mock/m" } }] };

  it("reads retries, cooldowns, fallbacks and timeouts in LiteLLM's names and units", () => {
    const s = settingsFromConfig(
      {
        ...base,
        router_settings: {
          num_retries: 4,
          retry_policy: { RateLimitErrorRetries: 1, BadRequestErrorRetries: 0 },
          allowed_fails: 2,
          cooldown_time: 30,
          fallbacks: [{ m: ["n", "o"] }],
          context_window_fallbacks: [{ m: ["big"] }],
          default_fallbacks: ["n"],
          timeout: 20,
          stream_timeout: 5,
        },
      },
      { source: "t", env: {} },
    );
    expect(s.router).toMatchObject({
      numRetries: 4,
      retryPolicy: { rate_limit: 1, bad_request: 0 },
      allowedFails: 2,
      cooldownMs: 30_000,
      timeoutMs: 20_000,
      streamTimeoutMs: 5_000,
    });
    expect([...s.router.fallbacks]).toEqual([["m", ["n", "o"]]]);
    expect([...s.router.contextWindowFallbacks]).toEqual([["m", ["big"]]]);
    // Fallbacks the file does not serve may be database models: told, not refused.
    expect(s.warnings.join("\n")).toContain("n, o, big");
    expect(settingsFromConfig(base, { source: "t", env: {} }).router).toMatchObject({ numRetries: 2, allowedFails: 3, cooldownMs: 5_000 });
  });

  it.each([
    [{ routing_strategy: "fastest-please" }, "router_settings.routing_strategy"],
    [{ routing_strategy_args: { ttl: 60 } }, "ttl"],
    [{ enable_pre_call_checks: true }, "enable_pre_call_checks"],
    [{ retry_policy: { RateLimitErrorRetrys: 1 } }, "RateLimitErrorRetrys"],
    [{ num_retries: -1 }, "router_settings.num_retries"],
  ])("refuses what it does not honour, naming it (%#)", (router_settings, named) => {
    expect(() => settingsFromConfig({ ...base, router_settings }, { source: "t", env: {} })).toThrowError(new RegExp(named.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  });

  it("reads every routing strategy by LiteLLM's name, and the background health checks of general_settings", () => {
    for (const strategy of ["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing-v2", "cost-based-routing"])
      expect(settingsFromConfig({ ...base, router_settings: { routing_strategy: strategy } }, { source: "t", env: {} }).router.strategy).toBe(strategy);
    const s = settingsFromConfig(
      {
        ...base,
        router_settings: { routing_strategy: "latency-based-routing", routing_strategy_args: { lowest_latency_buffer: 0.5 } },
        general_settings: { background_health_checks: true, health_check_interval: 60 },
      },
      { source: "t", env: {} },
    );
    expect(s.router).toMatchObject({ lowestLatencyBuffer: 0.5, healthChecks: { enabled: true, intervalMs: 60_000 } });
    expect(settingsFromConfig(base, { source: "t", env: {} }).router.healthChecks).toEqual({ enabled: false, intervalMs: 300_000 });
  });

  it("gives each deployment an id every replica computes alike, and reads weight and order", () => {
    const config = {
      model_list: [
        { model_name: "m", litellm_params: { model: "mock/a", weight: 3, order: 2 } },
        { model_name: "m", litellm_params: { model: "mock/a" } },
        { model_name: "m", litellm_params: { model: "mock/b" } },
      ],
    };
    const one = settingsFromConfig(config, { source: "t", env: {} }).models;
    const two = settingsFromConfig(config, { source: "t", env: {} }).models;
    expect(one.map((d) => d.id)).toEqual(two.map((d) => d.id));
    expect(new Set(one.map((d) => d.id)).size).toBe(3);
    expect(one.map((d) => [d.weight, d.order])).toEqual([
      [3, 2],
      [1, 1],
      [1, 1],
    ]);
  });
});
