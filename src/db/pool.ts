import pg from "pg";

import type { Config } from "../core/config.js";
import { pgTimestampToIso } from "../core/datetime-format.js";

/**
 * The pg pool every database handle is built on, without kysely (database.ts adds it), so the
 * CLI's read-only lookups can run on pg alone. Sessions run in `config.timeZone` (DISPLAY_TZ,
 * default UTC), so every timestamp read back carries that zone's offset; nothing depends on the
 * zone but how times are written out (they are compared as instants).
 */

/** What the pool needs of a logger: somewhere to say that a connection failed. */
export interface PoolLogger {
  warn(obj: object, msg: string): void;
}

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

/**
 * Pool errors (a server restart drops idle clients) are logged, never fatal; the pool opens
 * fresh connections on the next query.
 */
export function createPool(
  config: Config["pg"],
  logger: PoolLogger,
  /** Shown as `application_name` in pg_stat_activity (PostgreSQL keeps 63 bytes). */
  applicationName?: string,
): pg.Pool {
  const pool = new pg.Pool({
    ...(applicationName === undefined ? {} : { application_name: applicationName.slice(0, 63) }),
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
  return pool;
}
