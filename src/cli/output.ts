import { InvalidArgumentError } from "commander";

import type pg from "pg";

import type { Config } from "../core/config.js";
import { parseInstant } from "../core/time.js";
import type { PoolLogger } from "../db/pool.js";

/**
 * What every command prints and parses, and the light database access of the read-only
 * lookups, without kysely, zod schemas or pino: `broker pd get` loads this and pg only (plus
 * the configuration). context.ts holds the rest.
 */

/** commander argument parser for an instant: ISO-8601 with an offset, nothing else. */
export function parseTime(value: string): string {
  if (parseInstant(value.trim()) === undefined) {
    throw new InvalidArgumentError(
      "must be an ISO-8601 date-time with an offset, e.g. 2024-03-01T09:30:00Z or 2024-03-01T19:30:00+10:00.",
    );
  }
  return value.trim();
}

/** commander argument parser for a device uid: a positive integer, nothing else. */
export function parseUid(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError("must be a positive integer.");
  }
  return Number(value);
}

/** Writes `value` as IoTa's CLI does: JSON indented by two spaces (`null` for nothing). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value ?? null, null, 2)}\n`);
}

/**
 * Where IoTa printed `null`, `[]` or nothing and exited 0 for a device or user that does not
 * exist, scripts test for exactly that: we print the same, and say why on stderr.
 */
export function notFoundNote(what: string): void {
  process.stderr.write(`note: ${what} not found\n`);
}

/** Warnings of the pool (a lost connection) on stderr, one line, unless LOG_LEVEL is quieter. */
function stderrWarnings(level: string): PoolLogger {
  const quiet = ["error", "fatal", "silent"].includes(level);
  return {
    warn(obj: object, msg: string) {
      if (!quiet) {
        const err = (obj as { err?: unknown }).err;
        const why = err instanceof Error ? `: ${err.message}` : "";
        process.stderr.write(`warning: ${msg}${why}\n`);
      }
    },
  };
}

/**
 * Runs `fn` with a pg pool built from the environment (no kysely) and always ends it, so the
 * process exits as soon as it is done. For read-only lookups; changes go through withDatabase.
 */
export async function withPool<T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const { loadConfig } = await import("../core/config.js");
  const { createPool } = await import("../db/pool.js");
  const config: Config = loadConfig();
  const pool = createPool({ ...config.pg, poolSize: 1 }, stderrWarnings(config.logLevel));
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}
