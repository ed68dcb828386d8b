export const PGBOUNCER: string | undefined;
export interface PgBouncer {
  port: number;
  url(directUrl: string): string;
  adminUrl: string;
  stop(): Promise<void>;
}
export function startPgBouncer(options?: { poolSize?: number }): Promise<PgBouncer>;
