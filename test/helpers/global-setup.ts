import { randomBytes } from "node:crypto";

import pg from "pg";
import type { TestProject } from "vitest/node";

import { migrate } from "../../src/db/migrate.js";
import { PG } from "./env.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Name of this run's migrated template database (see db.ts). */
    templateDb: string;
  }
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...PG, database: "postgres" });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Builds a migrated template database once per run, under a name of its own so two runs never
 * collide; each test file clones it (see db.ts). Dropped again when the run ends.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const name = `broker_test_template_${randomBytes(4).toString("hex")}`;
  await admin((c) => c.query(`create database ${name}`));
  const pool = new pg.Pool({ ...PG, database: name, max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  project.provide("templateDb", name);
  return async () => {
    await admin((c) => c.query(`drop database if exists ${name} with (force)`));
  };
}
