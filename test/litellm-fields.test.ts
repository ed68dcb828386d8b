import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeySchema, regenerateKeySchema, updateKeySchema } from "../src/keys/key-schemas.js";
import { KEY_FIELDS, type LiteLLMField, MODEL_FIELDS, TEAM_FIELDS, USER_FIELDS } from "../src/config/litellm-fields.js";
import { litellmParamsSchema } from "../src/config/schema.js";
import { packageRoot } from "../src/paths.js";
import { newTeamSchema, updateTeamSchema } from "../src/teams/team-schemas.js";
import { newUserSchema, updateUserSchema } from "../src/users/user-schemas.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";

/**
 * Nothing a LiteLLM user sends is accepted and dropped (docs/litellm-migration.md, "Every LiteLLM field"): every field of
 * LiteLLM's key, team, user and model requests is either read by the schema (enforced) or refused with a 400 naming it,
 * and the docs' table says which, as the code does.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway();
}, 60_000);
afterAll(async () => {
  await gw?.close();
});

const ENTITIES: Array<{ name: string; fields: LiteLLMField[]; schemas: Array<{ shape: Record<string, unknown> }> }> = [
  { name: "Keys", fields: KEY_FIELDS, schemas: [generateKeySchema, updateKeySchema, regenerateKeySchema] },
  { name: "Teams", fields: TEAM_FIELDS, schemas: [newTeamSchema, updateTeamSchema] },
  { name: "Users", fields: USER_FIELDS, schemas: [newUserSchema, updateUserSchema] },
];

/** A value that asks for something, for each refused field (any such value must be refused). */
const SOMETHING = "something";

describe("every LiteLLM field is enforced or refused, never accepted and dropped", () => {
  it("the docs' table lists every field with the fate the code gives it", () => {
    const doc = readFileSync(path.join(packageRoot, "docs", "litellm-migration.md"), "utf8");
    for (const { name, fields } of [...ENTITIES, { name: "Models", fields: MODEL_FIELDS }]) {
      const section = doc.slice(doc.indexOf(`### ${name} (`));
      const table = section.slice(0, section.indexOf("\n\n", section.indexOf("|---")));
      for (const f of fields) expect(table, `${name}: ${f.name}`).toContain(`| \`${f.name}\` | ${f.fate} | ${f.note} |`);
      expect(table.split("\n").filter((l) => l.startsWith("| `")).length, name).toBe(fields.length);
    }
  });

  it("each enforced field is one the request schemas read (for the routes it belongs to)", () => {
    for (const { name, fields, schemas } of ENTITIES) {
      const read = new Set(schemas.flatMap((s) => Object.keys(s.shape)));
      for (const f of fields.filter((f) => f.fate === "enforced")) expect(read.has(f.name), `${name}: ${f.name}`).toBe(true);
    }
    const params = new Set(Object.keys(litellmParamsSchema.shape));
    for (const f of MODEL_FIELDS) expect(params.has(f.name), `model: ${f.name}`).toBe(f.fate === "enforced");
  });

  it.each(KEY_FIELDS.filter((f) => f.fate !== "enforced").map((f) => f.name))("key field %s: a 400 naming it on generate", async (field) => {
    const res = await gw.admin("/key/generate", { [field]: SOMETHING });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe(field);
  });

  it.each(TEAM_FIELDS.filter((f) => f.fate !== "enforced").map((f) => f.name))("team field %s: a 400 naming it on /team/new", async (field) => {
    const res = await gw.admin("/team/new", { [field]: SOMETHING });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe(field);
  });

  it.each(USER_FIELDS.filter((f) => f.fate !== "enforced").map((f) => f.name))("user field %s: a 400 naming it on /user/new", async (field) => {
    const res = await gw.admin("/user/new", { [field]: SOMETHING, auto_create_key: false });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe(field);
  });

  it.each(MODEL_FIELDS.filter((f) => f.fate !== "enforced").map((f) => f.name))("model field %s: a 400 naming it on /model/new", async (field) => {
    const res = await gw.admin("/model/new", { model_name: "m", litellm_params: { model: "mock/m", [field]: SOMETHING } });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toContain(field);
  });

  it("/model/new takes the deployment's rpm, tpm and api_version", async () => {
    const res = await gw.admin("/model/new", { model_name: "limited", litellm_params: { model: "mock/limited", rpm: 10, tpm: 1000, api_version: "2024-10-21" } });
    expect(res.status, res.text).toBe(200);
    const info = (await gw.admin("/model/info")).body.data.find((m: { model_name: string }) => m.model_name === "limited");
    expect(info.litellm_params).toMatchObject({ rpm: 10, tpm: 1000, api_version: "2024-10-21" });
  });
});
