import pg from "pg";

import { migrate } from "../../src/db/migrate.js";
import { PG, TEMPLATE_DB } from "./env.js";

/** Builds the migrated template database once per run; each test file clones it (see db.ts). */
export default async function setup(): Promise<void> {
  const admin = new pg.Client({ ...PG, database: "postgres" });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${TEMPLATE_DB} with (force)`);
    await admin.query(`create database ${TEMPLATE_DB}`);
  } finally {
    await admin.end();
  }
  const pool = new pg.Pool({ ...PG, database: TEMPLATE_DB, max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
}
