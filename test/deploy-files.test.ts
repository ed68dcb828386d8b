import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadSettings } from "../src/config/settings.js";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";

/**
 * There is no Docker engine here, so the compose cluster's files are checked by what can read
 * them: the compose file as YAML against what a real deployment needs, the Dockerfile's stages and
 * instructions, and nginx.conf by `nginx -t` where nginx is installed (a structural check otherwise).
 */
const root = path.resolve(import.meta.dirname, "..");
const compose = parse(readFileSync(path.join(root, "docker-compose.yml"), "utf8")) as {
  services: Record<string, any>;
  volumes?: Record<string, unknown>;
};
const composeText = readFileSync(path.join(root, "docker-compose.yml"), "utf8");
const services = compose.services;
const replicas = Object.keys(services).filter((name) => services[name].build);

describe("docker-compose.yml", () => {
  it("has Postgres, Redis, at least three gateway replicas built from the repo's Dockerfile, and nginx in front", () => {
    expect(services.postgres?.image).toMatch(/^postgres:1[5-9]/);
    expect(services.redis?.image).toMatch(/^redis:7/);
    expect(replicas.length).toBeGreaterThanOrEqual(3);
    for (const name of replicas) {
      const build = services[name].build;
      expect(existsSync(path.join(root, build.context, build.dockerfile)), `${name}: ${build.dockerfile}`).toBe(true);
    }
    expect(services.nginx?.image).toMatch(/^nginx:/);
    expect(services.nginx.ports).toContain("4000:80");
  });

  it("gives every service a restart policy and a healthcheck, and starts replicas only on healthy stores", () => {
    for (const [name, service] of Object.entries(services)) {
      expect(service.restart, name).toMatch(/^(unless-stopped|always|on-failure)/);
      // Replicas get theirs from the Dockerfile's HEALTHCHECK.
      if (!service.build) expect(service.healthcheck?.test, `${name} healthcheck`).toBeDefined();
    }
    for (const name of replicas) {
      expect(services[name].depends_on).toMatchObject({ postgres: { condition: "service_healthy" }, redis: { condition: "service_healthy" } });
    }
  });

  it("takes secrets from the environment (or an .env file), never from the file itself", () => {
    for (const name of replicas) {
      const env = services[name].environment;
      expect(env.GATEHOUSE_MASTER_KEY).toMatch(/^\$\{GATEHOUSE_MASTER_KEY:\?/); // required: compose refuses to start without it
      expect(env.DATABASE_URL).toContain("${POSTGRES_PASSWORD");
      expect(env.REDIS_URL).toBe("redis://redis:6379");
    }
    expect(composeText).not.toMatch(/sk-[A-Za-z0-9]{8,}/);
  });

  it("mounts one config file into every replica, and that file passes `config check` as shipped", () => {
    for (const name of replicas) {
      const service = services[name] as { environment: Record<string, string>; volumes?: string[] };
      const mount = (service.volumes ?? []).find((v) => v.endsWith(":ro") && v.split(":")[1] === service.environment.GATEHOUSE_CONFIG);
      expect(mount, `${name} mounts the file GATEHOUSE_CONFIG names`).toBeDefined();
      const file = path.join(root, mount!.split(":")[0]!);
      const settings = loadSettings({ file, env: {}, envOptional: true });
      expect(settings.models.length).toBeGreaterThan(0);
    }
  });
});

describe("the Dockerfile", () => {
  const text = readFileSync(path.join(root, "docs/deploy/Dockerfile"), "utf8");
  const instructions = text.split("\n").filter((l) => /^[A-Z]+\s/.test(l));

  it("is multi-stage, runs as a non-root user, has a healthcheck and starts the gateway", () => {
    expect(instructions.filter((l) => l.startsWith("FROM ")).length).toBeGreaterThanOrEqual(2);
    const user = instructions.filter((l) => l.startsWith("USER ")).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/USER\s+(root|0)\b/);
    expect(instructions.some((l) => l.startsWith("HEALTHCHECK "))).toBe(true);
    expect(text).toContain('CMD ["node", "dist/cli.js", "start"]');
  });

  it("copies what a replica reads at run time: migrations and Lua scripts, from paths that exist", () => {
    for (const needed of ["./sql", "./src/redis/lua", "./dist"]) expect(text).toContain(needed);
    for (const line of instructions.filter((l) => l.startsWith("COPY ") && !l.includes("--from"))) {
      const sources = line.split(/\s+/).slice(1, -1);
      for (const source of sources) expect(existsSync(path.join(root, source)), source).toBe(true);
    }
  });
});

describe("nginx.conf", () => {
  const text = readFileSync(path.join(root, "docs/deploy/nginx.conf"), "utf8");

  it("balances over exactly the compose replicas and does not buffer streams", () => {
    const servers = [...text.matchAll(/^\s*server\s+([\w.-]+):(\d+);/gm)].map((m) => `${m[1]}:${m[2]}`);
    expect(servers.sort()).toEqual(replicas.map((r) => `${r}:4000`).sort());
    expect(text).toMatch(/proxy_buffering\s+off;/);
    expect(text).toMatch(/proxy_http_version\s+1\.1;/);
    expect(text.split("{").length).toBe(text.split("}").length);
  });

  const nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));
  it.skipIf(!nginx)("passes `nginx -t` (replica host names pointed at localhost, as compose's DNS would resolve them)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "gh-nginx-"));
    const conf = path.join(dir, "nginx.conf");
    let local = text;
    for (const r of replicas) local = local.replaceAll(`${r}:`, "127.0.0.1:");
    // Run unprivileged: a high port and temp paths in the scratch directory.
    local = local
      .replace(/listen\s+80;/, "listen 18080;")
      .replace(
        "http {",
        `http {\n  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi; access_log off;`,
      );
    writeFileSync(conf, `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\n${local}`);
    const r = spawnSync(nginx!, ["-t", "-q", "-c", conf, "-p", dir], { encoding: "utf8" });
    expect(r.stderr + r.stdout).not.toMatch(/emerg|failed/);
    expect(r.status).toBe(0);
  });
});
