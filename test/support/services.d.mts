export const POSTGRES_ADMIN_URL: string;
export const REDIS_URL: string;

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export interface RedisNamespace {
  prefix: string;
  cleanup(): Promise<void>;
}

export function createTestDatabase(prefix?: string): Promise<TestDatabase>;
export function createRedisNamespace(prefix?: string): RedisNamespace;
export function freePort(): Promise<number>;
export function waitForPort(port: number, options?: { timeoutMs?: number; what?: string; gaveUp?: () => string | undefined }): Promise<void>;
