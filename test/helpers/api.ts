import type { RunningSystem } from "../../src/app/root.js";
import { addUser, issueToken } from "../../src/api/credentials.js";
import { createLogger } from "../../src/core/logger.js";
import { cleanupAmqp, isolatedAmqpConfig } from "./bus.js";
import { createTestDatabase, type TestDatabase } from "./db.js";
import { startTestSystem, testConfig } from "./system.js";

/** A running `broker run api` on its own database, with an admin and a read-only user. */
export interface ApiHarness {
  readonly db: TestDatabase;
  readonly system: RunningSystem;
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
  /** `http://127.0.0.1:<port>/broker/api` */
  readonly base: string;
  /** Bearer tokens. */
  readonly adminToken: string;
  readonly readerToken: string;
  /** A request to `base + path` as the given token (none when undefined). */
  call(
    method: string,
    path: string,
    options?: { token?: string | undefined; body?: unknown; headers?: Record<string, string> },
  ): Promise<Response>;
  /** Rows of a SQL query on the test database. */
  sql<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export const ADMIN = { username: "admin", password: "admin-secret:with-colon" };
export const READER = { username: "reader", password: "reader-secret" };

export async function startApi(
  options: {
    env?: Record<string, string>;
    /** Use this database (already migrated) instead of a new one. */
    database?: TestDatabase;
    /** Collect every log line (at debug level) here. */
    logLines?: string[];
  } = {},
): Promise<ApiHarness> {
  const db = options.database ?? (await createTestDatabase());
  const amqp = isolatedAmqpConfig();
  const config = testConfig(db, amqp, { API_PORT: "0", ...options.env });
  const lines = options.logLines;
  const system = lines
    ? await startTestSystem(["api"], config, {
        logger: createLogger({
          level: "debug",
          destination: { write: (line: string) => lines.push(line) },
        }),
      })
    : await startTestSystem(["api"], config);
  const origin = `http://127.0.0.1:${system.components[0]!.port!()}`;
  const base = `${origin}/broker/api`;
  const kdb = db.handle.db;
  const admin = await addUser(kdb, { ...ADMIN, readOnly: false });
  const reader = await addUser(kdb, READER);
  const adminToken = await issueToken(kdb, admin);
  const readerToken = await issueToken(kdb, reader);
  return {
    db,
    system,
    origin,
    base,
    adminToken,
    readerToken,
    call(method, path, options = {}) {
      const headers: Record<string, string> = { ...options.headers };
      if (options.token !== undefined) {
        headers.authorization = `Bearer ${options.token}`;
      }
      let body: string | undefined;
      if (options.body !== undefined) {
        body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
        headers["content-type"] ??= "application/json";
      }
      return fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    },
    async sql<T>(text: string, params: unknown[] = []) {
      return (await db.handle.pool.query(text, params)).rows as T[];
    },
    async close() {
      await system.stop();
      await cleanupAmqp(amqp, []);
      await db.drop();
    },
  };
}

/** `Authorization: Basic …` for a user name and password. */
export function basic(username: string, password: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}` };
}
