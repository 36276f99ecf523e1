import { Kysely, PostgresDialect, sql } from "kysely";
import type pg from "pg";

import type { Config } from "../core/config.js";
import type { Logger } from "../core/logger.js";
import { createPool } from "./pool.js";
import { preparingPool } from "./prepared.js";
import type { Database } from "./tables.js";

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  readonly db: Db;
  readonly pool: pg.Pool;
  /** Resolves when PostgreSQL answers a trivial query within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Builds the process's one pg pool (pool.ts: session zone DISPLAY_TZ, timestamptz as Python's
 * isoformat text) and kysely instance.
 */
export function createDatabase(
  config: Config["pg"],
  logger: Logger,
  options: {
    /** Shown as `application_name` in pg_stat_activity (PostgreSQL keeps 63 bytes). */
    applicationName?: string;
  } = {},
): DatabaseHandle {
  const pool = createPool(config, logger, options.applicationName);
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({
      pool: config.preparedStatements === false ? pool : preparingPool(pool),
    }),
  });
  let closed: Promise<void> | undefined;
  return {
    db,
    pool,
    async ping(timeoutMs = 2_000) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          sql`select 1`.execute(db),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error("timeout")), timeoutMs);
          }),
        ]);
        return true;
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
    close() {
      // kysely ends the pool only if it ran a query itself; callers that used the pool directly
      // (migrations) would otherwise leave an idle client holding the process open.
      closed ??= db.destroy().then(async () => {
        if (!pool.ended) {
          await pool.end();
        }
      });
      return closed;
    },
  };
}

/** JSON text for a jsonb parameter. */
export function toJson(value: unknown): string {
  return JSON.stringify(value);
}
