import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { packageRoot } from "../../src/paths.js";

/** A gateway replica as a real process: `node dist/cli.js start`, port read from its startup log line. */
export interface ReplicaProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Every stdout/stderr line so far. */
  output: string[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function spawnReplica(env: Record<string, string>, args: string[] = [], timeoutMs = 20_000): Promise<ReplicaProcess> {
  const child = spawn(process.execPath, [path.join(packageRoot, "dist", "cli.js"), "start", ...args], {
    env: { PATH: process.env.PATH ?? "", PORT: "0", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start in ${timeoutMs} ms:\n${output.join("\n")}`)), timeoutMs);
    const onLine = (line: string) => {
      output.push(line);
      if (line.includes('"gatehouse is listening"')) {
        clearTimeout(timer);
        resolve(JSON.parse(line).port);
      }
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      let buffered = "";
      stream.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("utf8");
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
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
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}
