import { randomBytes } from "node:crypto";

import pg from "pg";
import { afterAll, beforeAll, inject } from "vitest";

import type { Config } from "../../src/core/config.js";
import { createLogger } from "../../src/core/logger.js";
import { createDatabase, type DatabaseHandle, type Db } from "../../src/db/database.js";
import { PG } from "./env.js";

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ ...PG, database: "postgres" });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

export interface TestDatabase {
  readonly name: string;
  readonly pg: Config["pg"];
  /** A kysely handle on the database (closed by drop()). */
  readonly handle: DatabaseHandle;
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database of its own for one test file, cloned from the template that
 * global-setup.ts migrated. `empty: true` gives an unmigrated database instead.
 */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const name = `broker_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(async (admin) => {
    // CREATE DATABASE ... TEMPLATE fails while another session is connected to the template,
    // which only happens for a moment while another file clones it: retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(
          options.empty
            ? `create database ${name}`
            : `create database ${name} template ${inject("templateDb")}`,
        );
        return;
      } catch (err) {
        if (attempt > 50 || (err as { code?: string }).code !== "55006") {
          throw err;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  const config: Config["pg"] = { ...PG, database: name, poolSize: 5 };
  const handle = createDatabase(config, createLogger({ level: "silent" }));
  return {
    name,
    pg: config,
    handle,
    async drop() {
      await handle.close();
      await withAdmin((admin) => admin.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/**
 * The test file's own database ({@link createTestDatabase}), created before its tests and
 * dropped after them. Read `db` and `testDb` inside tests or hooks, not at the top level.
 */
export function useTestDatabase(): { readonly db: Db; readonly testDb: TestDatabase } {
  let current: TestDatabase | undefined;
  beforeAll(async () => {
    current = await createTestDatabase();
  });
  afterAll(async () => {
    await current?.drop();
  });
  const get = (): TestDatabase => {
    if (current === undefined) {
      throw new Error("the test database exists only while the file's tests run");
    }
    return current;
  };
  return {
    get db() {
      return get().handle.db;
    },
    get testDb() {
      return get();
    },
  };
}
