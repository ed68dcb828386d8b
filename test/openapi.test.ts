import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_ROUTES } from "../src/http/api-routes.js";
import { startTestGateway, type TestGateway } from "./helpers/gateway-fixture.js";

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.close();
});

/** Every method + path the express app routes, read off its router stack (nested routers included). */
function appRoutes(app: any): Array<{ method: string; path: string }> {
  const out: Array<{ method: string; path: string }> = [];
  const walk = (stack: any[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths: string[] = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths) for (const method of Object.keys(layer.route.methods)) out.push({ method, path: p.replace(/:(\w+)/g, "{$1}") });
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack);
      }
    }
  };
  walk(app.router.stack);
  return out;
}

describe("GET /openapi.json", () => {
  it("is an OpenAPI 3.1 document with every route the app serves, admin bodies from the validating schemas", async () => {
    const res = await gw.call("/openapi.json");
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toBe("3.1.0");
    // The express app's routes and the OpenAI routes served in front of it.
    const routes = [...appRoutes(gw.gateway.app), ...API_ROUTES];
    expect(routes.length).toBeGreaterThan(20);
    for (const { method, path } of routes) expect(doc.paths[path]?.[method], `${method.toUpperCase()} ${path}`).toBeDefined();
    // Nothing documented that the app does not serve.
    for (const [path, ops] of Object.entries<any>(doc.paths)) for (const method of Object.keys(ops)) expect(routes).toContainEqual({ method, path });

    const generate = doc.paths["/key/generate"].post.requestBody.content["application/json"].schema;
    expect(generate.additionalProperties).toBe(false);
    expect(generate.properties.max_budget).toBeDefined();
    expect(generate.properties.rpm_limit).toBeDefined();
    const regen = doc.paths["/key/{key}/regenerate"].post;
    expect(regen.parameters).toContainEqual(expect.objectContaining({ name: "key", in: "path" }));
    expect(regen.requestBody.content["application/json"].schema.properties.grace_period).toBeDefined();
    expect(doc.paths["/v1/chat/completions"].post.security).toEqual([{ virtualKey: [] }]);
    expect(doc.paths["/key/list"].get.parameters.map((p: any) => p.name)).toEqual(expect.arrayContaining(["page", "size", "key_alias"]));
  });
});
