// The build the proxy-overhead bench measures beside the current one ("gatehouse before"), so that `npm run bench`
// shows old and new side by side with no set-up. By default it is the last commit before the hot-path work
// (docs/performance.md), built once from this checkout's git history into bench/.baseline/<commit>/ (ignored by
// git). BENCH_BASELINE=<a built checkout> measures another build instead; BENCH_BASELINE=none measures none.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { root } from "./harness.mjs";

/** The last commit before the hot path was reworked: what "before" means in docs/performance.md. */
export const DEFAULT_BASELINE_COMMIT = "77c8c5107a87afa9cc99589a5e9e5b827e2d23b0";

/** The directory of the build to measure as "before", or undefined for none (with the reason printed). */
export function baselineBuild(setting = process.env.BENCH_BASELINE) {
  if (setting === "none") return undefined;
  if (setting) return path.resolve(setting);
  const dir = path.join(root, "bench", ".baseline", DEFAULT_BASELINE_COMMIT.slice(0, 12));
  if (existsSync(path.join(dir, "dist", "cli.js"))) return dir;
  try {
    execFileSync("git", ["cat-file", "-e", `${DEFAULT_BASELINE_COMMIT}^{commit}`], { cwd: root, stdio: "ignore" });
  } catch {
    console.error(`bench: commit ${DEFAULT_BASELINE_COMMIT.slice(0, 12)} is not in this checkout (a shallow clone?): no "before" build is measured`);
    return undefined;
  }
  console.error(`bench: building the "before" build (${DEFAULT_BASELINE_COMMIT.slice(0, 12)}) into ${path.relative(root, dir)} once`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    // The commit's tree as files, its own TypeScript built with this checkout's compiler and packages.
    execFileSync("sh", ["-c", `git archive ${DEFAULT_BASELINE_COMMIT} | tar -x -C "${dir}"`], { cwd: root, stdio: "inherit" });
    symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"), "dir");
    execFileSync(process.execPath, [path.join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], { cwd: dir, stdio: "inherit" });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    console.error(`bench: the "before" build failed (${err.message}): none is measured`);
    return undefined;
  }
  return dir;
}
