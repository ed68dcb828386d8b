// Runs every benchmark in turn. Each prints its table and writes bench/results/<name>.json.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { root } from "./lib/harness.mjs";

const SCRIPTS = [
  "auth-path.mjs",
  "proxy-overhead.mjs",
  // The throughput targets again, one bare relay at a time, with a median of ten rounds each way of running them.
  ["ab.mjs", { BENCH_AGAINST: "bare-proxy.mjs", BENCH_ROUNDS: "10" }],
  ["ab.mjs", { BENCH_AGAINST: "bare-http-proxy.mjs", BENCH_ROUNDS: "10" }],
  ["ab.mjs", { BENCH_AGAINST: "bare-proxy.mjs", BENCH_ROUNDS: "10", BENCH_TOGETHER: "1" }],
  ["ab.mjs", { BENCH_AGAINST: "bare-http-proxy.mjs", BENCH_ROUNDS: "10", BENCH_TOGETHER: "1" }],
  "instructions.mjs",
  "propagation.mjs",
  "scale-out.mjs",
  "limits.mjs",
  "unknown-keys.mjs",
  "workers.mjs",
  "teams.mjs",
  "models.mjs",
  "translation.mjs",
  "native-stream.mjs",
  "routing.mjs",
  "profile-hot-path.mjs",
  ["profile-hot-path.mjs", { PROFILE_STREAM: "1" }],
  ["profile-hot-path.mjs", { PROFILE_GENERAL: "1" }],
  ["profile-hot-path.mjs", { PROFILE_FLOOR: "1" }],
];
let failed = 0;
for (const entry of SCRIPTS) {
  const [script, env] = Array.isArray(entry) ? entry : [entry, {}];
  const settings = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  console.log(`\n=== bench/${script} ${settings.join(" ")}`);
  const r = spawnSync(process.execPath, [path.join(root, "bench", script)], { stdio: "inherit", env: { ...process.env, ...env } });
  if (r.status !== 0) failed++;
}
spawnSync(process.execPath, [path.join(root, "bench", "report.mjs")], { stdio: "inherit" });
process.exit(failed ? 1 : 0);
