import { readFile } from "node:fs/promises";

import type { z } from "zod";

import { loadConfig } from "../core/config.js";
import type { JsonObject } from "../core/devices.js";
import { createLogger } from "../core/logger.js";
import { createDatabase, type DatabaseHandle, type Db } from "../db/database.js";
import { InputError, UsageError } from "./errors.js";

export { InputError, UsageError } from "./errors.js";
export { notFoundNote, parseUid, printJson } from "./output.js";

/**
 * Runs `fn` with a database built from the environment and always closes it, so a command's
 * process exits as soon as it is done. Logs go to stderr: stdout carries only the JSON output.
 */
export async function withDatabase<T>(
  fn: (db: Db, handle: DatabaseHandle) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  const logger = createLogger({ level: config.logLevel, destination: process.stderr });
  const handle = createDatabase({ ...config.pg, poolSize: 2 }, logger);
  try {
    return await fn(handle.db, handle);
  } finally {
    await handle.close();
    // kysely ends the pool only if it ran a query itself; `migrate` uses the pool directly, and
    // an idle client left behind would keep the process alive for the pool's idle timeout.
    if (!handle.pool.ended) {
      await handle.pool.end();
    }
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The JSON object given by `--json TEXT` or `--file PATH` (`-` = stdin), exactly one of them.
 * Error messages never repeat the text itself (IoTa echoed every --json value to stdout).
 */
export async function readJsonObject(options: {
  json?: string;
  file?: string;
}): Promise<JsonObject> {
  if ((options.json === undefined) === (options.file === undefined)) {
    throw new UsageError("give exactly one of --json or --file");
  }
  let text: string;
  let origin: string;
  if (options.json !== undefined) {
    text = options.json;
    origin = "--json";
  } else {
    const file = options.file as string;
    origin = file === "-" ? "standard input" : file;
    try {
      text = file === "-" ? await readStdin() : await readFile(file, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read ${origin}: ${(err as Error).message}`);
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the input, which may hold secrets: say only where.
    throw new UsageError(`${origin} is not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${origin} must be a JSON object`);
  }
  return value as JsonObject;
}

/** Validates `value` with `schema`, naming every problem in one line. */
export function validate<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues
      .map((i) => `${i.path.length ? i.path.join(".") : "(object)"}: ${i.message}`)
      .join("; ");
    throw new InputError(`invalid ${what}: ${problems}`);
  }
  return result.data;
}
