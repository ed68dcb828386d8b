// Saturation with wrk: a C load generator that costs far less CPU than a Node.js one. On a machine whose few
// cores the load generator shares with the system under test, a Node.js generator takes CPU from it and lowers
// the figure it measures (autocannon and wrk disagreed by ~2× on the same ratio).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export function wrkPath() {
  for (const p of ["/usr/bin/wrk", "/usr/local/bin/wrk"]) {
    if (spawnSync(p, ["--version"]).error === undefined) return p;
  }
  return null;
}

/**
 * Runs wrk against `url` with a POST body and headers; resolves with { rps, p50Ms, p99Ms, errors }.
 * One wrk thread: its CPU is what is left over from the system under test.
 */
export function wrk({ url, headers, body, connections, seconds, threads = 1 }) {
  const bin = wrkPath();
  if (!bin) throw new Error("wrk is not installed (apt-get install wrk)");
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-wrk-"));
  const script = path.join(dir, "post.lua");
  const lines = [`wrk.method = "POST"`, `wrk.body = ${JSON.stringify(body)}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`wrk.headers[${JSON.stringify(name)}] = ${JSON.stringify(value)}`);
  // Count non-2xx answers: wrk reports only socket errors and non-2xx/3xx in its summary.
  lines.push(
    `function done(summary, latency, requests) io.write(string.format("JSON %d %d %d %d %d\\n", latency:percentile(50), latency:percentile(99), summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.requests)) end`,
  );
  writeFileSync(script, lines.join("\n"));
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ["-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, "-s", script, url], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.once("error", reject);
    child.once("exit", (code) => {
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const summary = /JSON (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(out);
      if (code !== 0 || !rps || !summary) return reject(new Error(`wrk failed (${code}): ${out}`));
      resolve({
        rps: Number(rps[1]),
        p50Ms: Number(summary[1]) / 1000,
        p99Ms: Number(summary[2]) / 1000,
        non2xx: Number(summary[3]),
        errors: Number(summary[4]),
        requests: Number(summary[5]),
      });
    });
  });
}
