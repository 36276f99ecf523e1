import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";

import type { Config } from "../core/config.js";
import type { Logger } from "../core/logger.js";
import { pgTimestampToIso } from "../core/datetime-format.js";
import type { Database } from "./tables.js";

export type Db = Kysely<Database>;

const TIMESTAMPTZ_OID = 1184;

/** A pg type parser set that keeps timestamptz at microsecond precision as ISO-8601 text. */
function typeParsers(): pg.CustomTypesConfig {
  return {
    getTypeParser: ((oid: number, format?: "text" | "binary") => {
      if (oid === TIMESTAMPTZ_OID && format !== "binary") {
        return (value: string) => pgTimestampToIso(value);
      }
      return pg.types.getTypeParser(oid, format);
    }) as pg.CustomTypesConfig["getTypeParser"],
  };
}

export interface DatabaseHandle {
  readonly db: Db;
  readonly pool: pg.Pool;
  /** Resolves when PostgreSQL answers a trivial query within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Builds the process's one pg pool and kysely instance. Sessions run in `config.timeZone`
 * (DISPLAY_TZ, default UTC), so every timestamp read back carries that zone's offset; nothing
 * depends on the zone but how times are written out (they are compared as instants). Pool errors (a server restart drops idle clients) are logged, never
 * fatal; the pool opens fresh connections on the next query.
 */
export function createDatabase(config: Config["pg"], logger: Logger): DatabaseHandle {
  const pool = new pg.Pool({
    host: config.host,
    port: config.port,
    user: config.user,
    password: config.password,
    database: config.database,
    max: config.poolSize,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // Validated by loadConfig as a plain zone name, so it needs no quoting here.
    options: `-c TimeZone=${config.timeZone ?? "UTC"}`,
    types: typeParsers(),
  });
  pool.on("error", (err) => logger.warn({ err }, "idle PostgreSQL client failed"));
  // A client checked out of the pool (inside a transaction, between two queries) reports a lost
  // connection as an 'error' event that nobody else listens to; unhandled, it would crash the
  // process. The query in progress fails on its own and the pool discards the client.
  pool.on("connect", (client) => {
    client.on("error", (err) => logger.warn({ err }, "PostgreSQL connection lost"));
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
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
