import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

// src/paths.ts and dist/paths.js sit at the same depth, so both resolve the package root the same way.
export const packageRoot = path.resolve(fileURLToPath(new URL("..", import.meta.url)));
export const migrationsDir = path.join(packageRoot, "sql");
export const luaDir = path.join(packageRoot, "src", "redis", "lua");

/** The package's version, from package.json. */
export const packageVersion: string = (JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8")) as { version: string }).version;
/** The admin UI's browser files (served under /ui/app). */
export const uiDir = path.join(packageRoot, "ui");
