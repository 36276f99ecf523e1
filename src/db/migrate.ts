import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import type pg from "pg";

/**
 * Applies db/migrations/NNN_name.sql in order. The number is the schema version: the highest one
 * applied is recorded in IoTa's one-row `version` table, so an IoTa database (version 2)
 * continues from 003 and an empty one starts at 002. Which files ran is recorded, one row each, in
 * `schema_migrations`, so a file that lands after a higher-numbered one (parallel branches) is
 * still applied. A database that predates `schema_migrations` adopts every file up to its
 * `version`. Each file runs in its own transaction; a session advisory lock keeps two processes
 * from migrating at once.
 */

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export interface MigrationResult {
  readonly from: number;
  readonly to: number;
  readonly applied: readonly { version: number; name: string; ms: number }[];
}

/** Arbitrary constant shared by every process that migrates this database. */
const LOCK_KEY = 4_715_1001;

/** Finds db/migrations by walking up from this module (works from src/ and from dist/src/). */
export function migrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "db", "migrations");
    if (existsSync(candidate)) {
      return candidate;
    }
    dir = dirname(dir);
  }
  throw new Error("db/migrations not found above " + fileURLToPath(import.meta.url));
}

export async function loadMigrations(dir = migrationsDir()): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const version = Number(file.slice(0, file.indexOf("_")));
    migrations.push({ version, name: file, sql: await readFile(join(dir, file), "utf8") });
  }
  return migrations;
}

async function currentVersion(client: pg.PoolClient): Promise<number> {
  const exists = await client.query<{ present: boolean }>(
    "select to_regclass('version') is not null as present",
  );
  if (!exists.rows[0]?.present) {
    return 0;
  }
  const row = await client.query<{ v: number | null }>("select max(version) as v from version");
  return row.rows[0]?.v ?? 0;
}

/** Versions recorded as applied; undefined when the database has no record yet. */
async function appliedVersions(client: pg.PoolClient): Promise<Set<number> | undefined> {
  const exists = await client.query<{ present: boolean }>(
    "select to_regclass('schema_migrations') is not null as present",
  );
  if (!exists.rows[0]?.present) {
    return undefined;
  }
  const rows = await client.query<{ version: number }>("select version from schema_migrations");
  return new Set(rows.rows.map((r) => r.version));
}

/** Creates `schema_migrations`, adopting every known file up to the recorded `version`. */
async function startRecord(
  client: pg.PoolClient,
  all: Migration[],
  from: number,
): Promise<Set<number>> {
  await client.query(
    `create table if not exists schema_migrations (
       version integer primary key,
       name text not null,
       applied_at timestamptz not null default now())`,
  );
  const adopted = all.filter((m) => m.version <= from);
  for (const m of adopted) {
    await client.query(
      "insert into schema_migrations (version, name) values ($1, $2) on conflict do nothing",
      [m.version, m.name],
    );
  }
  return new Set(adopted.map((m) => m.version));
}

export async function migrate(pool: pg.Pool, migrations?: Migration[]): Promise<MigrationResult> {
  const all = migrations ?? (await loadMigrations());
  const client = await pool.connect();
  try {
    await client.query("select pg_advisory_lock($1)", [LOCK_KEY]);
    const from = await currentVersion(client);
    if (from === 1) {
      throw new Error(
        "this database is at IoTa schema version 1: apply IoTa's db/upgrade/002.sql first, then run broker migrate",
      );
    }
    const done = (await appliedVersions(client)) ?? (await startRecord(client, all, from));
    const applied: { version: number; name: string; ms: number }[] = [];
    let to = from;
    for (const m of all) {
      if (done.has(m.version)) {
        continue;
      }
      const started = Date.now();
      await client.query("begin");
      try {
        await client.query(m.sql);
        await client.query("insert into schema_migrations (version, name) values ($1, $2)", [
          m.version,
          m.name,
        ]);
        to = Math.max(to, m.version);
        await client.query("delete from version");
        await client.query("insert into version (version) values ($1)", [to]);
        await client.query("commit");
      } catch (err) {
        await client.query("rollback");
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push({ version: m.version, name: m.name, ms: Date.now() - started });
    }
    return { from, to, applied };
  } finally {
    await client.query("select pg_advisory_unlock($1)", [LOCK_KEY]).catch(() => undefined);
    client.release();
  }
}

/**
 * The database's schema version, the version this build expects, and the files not applied yet.
 * Components refuse to start while any is pending (run `broker migrate`) rather than fail on
 * every message.
 */
export async function schemaStatus(
  pool: pg.Pool,
): Promise<{ current: number; expected: number; pending: string[] }> {
  const migrations = await loadMigrations();
  const expected = Math.max(0, ...migrations.map((m) => m.version));
  const client = await pool.connect();
  try {
    const current = await currentVersion(client);
    const applied = await appliedVersions(client);
    const pending = migrations
      .filter((m) => (applied ? !applied.has(m.version) : m.version > current))
      .map((m) => m.name);
    return { current, expected, pending };
  } finally {
    client.release();
  }
}
