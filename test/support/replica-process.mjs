// A gateway replica as a real process: `node dist/cli.js start`, its port read from the startup log line.
// Shared by the tests, the chaos suite and the benchmarks (types in replica-process.d.mts).
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const cli = path.resolve(fileURLToPath(new URL("../../dist/cli.js", import.meta.url)));

export async function spawnReplica(env, args = [], options = {}) {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const keepOutput = options.keepOutput ?? true;
  // A launcher runs Node.js itself (a benchmark's `valgrind --tool=callgrind`); the process group still holds it all.
  const [command, ...commandArgs] = [...(options.launcher ?? []), process.execPath, ...(options.nodeArgs ?? []), options.cli ?? cli, "start", ...args];
  const child = spawn(command, commandArgs, {
    env: { PATH: process.env.PATH ?? "", PORT: "0", LOG_LEVEL: "info", ...relayWay(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: stop() signals the group, so worker processes (--workers) go with it.
    detached: true,
  });
  const output = [];
  let listening = false;
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start in ${timeoutMs} ms:\n${output.join("\n")}`)), timeoutMs);
    const onLine = (line) => {
      // The pipe is always drained; after start-up, lines are kept only when asked (tests scan them).
      if (listening && !keepOutput) return;
      output.push(line);
      if (!listening && line.includes('"gatehouse is listening"')) {
        listening = true;
        clearTimeout(timer);
        resolve(JSON.parse(line).port);
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buffered = "";
      stream.on("data", (chunk) => {
        // Drained without reading once nothing is kept: a benchmark's request log costs the reader no CPU.
        if (listening && !keepOutput) return;
        buffered += chunk.toString("utf8");
        for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
          onLine(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
        }
      });
    }
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`replica exited with ${code} before listening:\n${output.join("\n")}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    output,
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      try {
        process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
      return exited;
    },
  };
}

/**
 * The relay's way under test: the suite runs its request-behaviour files twice, once with GATEHOUSE_SERVER_STRAIGHT_PATH
 * set to "off" (test/vitest.config.ts), and every gateway a test starts takes that setting unless the test sets it.
 */
export function relayWay() {
  const way = process.env.GATEHOUSE_SERVER_STRAIGHT_PATH;
  return way === undefined ? {} : { GATEHOUSE_SERVER_STRAIGHT_PATH: way };
}
