import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The files that pin what a relayed request does (its answer, heads, errors, spend row, access-log line, routing):
 * run a second time with every request sent the relay's general way (server.straight_path off), so both of the
 * relay's ways are held to the same behaviour (docs/performance.md, "The straight path").
 */
const REQUEST_BEHAVIOUR = [
  "test/proxy.test.ts",
  "test/answer-heads.test.ts",
  "test/access-log.test.ts",
  "test/spend-logs.test.ts",
  "test/routing.test.ts",
  "test/routing-strategies.test.ts",
  "test/providers.test.ts",
  "test/openai-client.test.ts",
  "test/stream-fuzz.test.ts",
  "test/request-id.test.ts",
  "test/native-body.test.ts",
  "test/bad-input.test.ts",
  "test/straight-path.test.ts",
  "test/models.test.ts",
];

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two cores: more files at once only makes multi-process tests fight for CPU.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: "gatehouse", include: ["test/**/*.test.ts", "chaos/**/*.test.ts"] } },
      { extends: true, test: { name: "general way", include: REQUEST_BEHAVIOUR, env: { GATEHOUSE_SERVER_STRAIGHT_PATH: "off" } } },
    ],
  },
});
