import { sql } from "kysely";
import { describe, expect, it } from "vitest";

import { createLogger } from "../../src/core/logger.js";
import { createDatabase } from "../../src/db/database.js";
import { preparedAs } from "../../src/db/prepared.js";
import { useTestDatabase } from "../helpers/db.js";

const database = useTestDatabase();

describe("prepared statements", () => {
  it("sends a marked statement as a named one, once per connection, and others unnamed", async () => {
    const { db } = database;
    await db.connection().execute(async (conn) => {
      for (const n of [1, 2, 3]) {
        const { rows } = await sql<{ n: number }>`${sql.raw(preparedAs("test_echo"))}
          select ${n}::int as n`.execute(conn);
        expect(rows).toEqual([{ n }]);
      }
      await sql`select 1 as unmarked`.execute(conn);
      const { rows } = await sql<{ name: string; statement: string }>`
        select name, statement from pg_prepared_statements`.execute(conn);
      expect(rows).toEqual([
        { name: "test_echo", statement: expect.stringContaining("select $1::int as n") },
      ]);
    });
  });

  it("prepares nothing with PG_PREPARED_STATEMENTS=false (behind an old PgBouncer)", async () => {
    const { testDb } = database;
    const plain = createDatabase(
      { ...testDb.pg, preparedStatements: false },
      createLogger({ level: "silent" }),
    );
    try {
      await plain.db.connection().execute(async (conn) => {
        await sql`${sql.raw(preparedAs("test_echo"))} select 1 as n`.execute(conn);
        const { rows } = await sql`select name from pg_prepared_statements`.execute(conn);
        expect(rows).toEqual([]);
      });
    } finally {
      await plain.close();
    }
  });

  it("refuses a name that could not be a marker", () => {
    expect(() => preparedAs("Bad name")).toThrow(/lower case/);
  });
});
