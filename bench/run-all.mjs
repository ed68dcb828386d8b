// Runs every benchmark in turn. Each prints its table and writes bench/results/<name>.json.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { root } from "./lib/harness.mjs";

const SCRIPTS = [
  "auth-path.mjs",
  "proxy-overhead.mjs",
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
];
let failed = 0;
for (const script of SCRIPTS) {
  console.log(`\n=== bench/${script}`);
  const r = spawnSync(process.execPath, [path.join(root, "bench", script)], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
spawnSync(process.execPath, [path.join(root, "bench", "report.mjs")], { stdio: "inherit" });
process.exit(failed ? 1 : 0);
