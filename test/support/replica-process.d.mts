import type { ChildProcess } from "node:child_process";

export interface ReplicaProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** stdout/stderr lines (all of them unless keepOutput was false). */
  output: string[];
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function spawnReplica(
  env: Record<string, string>,
  args?: string[],
  options?: {
    timeoutMs?: number;
    keepOutput?: boolean /** Node.js flags before the script (--cpu-prof, --max-semi-space-size). */;
    nodeArgs?: string[] /** Another build's dist/cli.js (a benchmark's "before"). */;
    cli?: string /** A command that runs Node.js with the rest as its arguments (bench/instructions.mjs: valgrind). */;
    launcher?: string[];
  },
): Promise<ReplicaProcess>;

/** GATEHOUSE_SERVER_STRAIGHT_PATH from the test run's environment, when it sets it (the relay's way under test). */
export function relayWay(): Record<string, string>;
