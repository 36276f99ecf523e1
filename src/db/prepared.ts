import type { PostgresPool, PostgresPoolClient } from "kysely";
import type pg from "pg";

/**
 * Prepared statements for the hot path. PostgreSQL plans an unnamed statement afresh every time
 * it runs; for the ingest and mapper statements (a CTE over a JSON record set, an array insert)
 * planning took a quarter of their time (pg_stat_statements, issue 11). A statement whose text
 * begins with {@link preparedAs}'s marker is sent as a named statement instead: parsed once per
 * connection, planned once it settles on a generic plan, then only bound and executed.
 *
 * The text under one name must never change (pg refuses a second text for a name it knows),
 * so only statements with a fixed text, their values all parameters, are marked. PostgreSQL
 * replans a prepared statement itself when a migration changes a table it reads.
 */
const MARKER = /^\/\* prepared:([a-z0-9_]+) \*\//;

/** The comment that marks a statement's text as prepared under `name` (lower case, digits, _). */
export function preparedAs(name: string): string {
  if (!/^[a-z0-9_]+$/.test(name)) {
    throw new Error(`prepared statement name ${name} must be lower case letters, digits and _`);
  }
  return `/* prepared:${name} */`;
}

type Query = (text: string, values: readonly unknown[]) => Promise<pg.QueryResult>;

/**
 * kysely's view of `pool`: the same connections, with marked statements sent as named ones. The
 * wrapper of each connection is kept with it, so kysely keeps finding the connection it knows.
 */
export function preparingPool(pool: pg.Pool): PostgresPool {
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (wrapper === undefined) {
        const query = client.query.bind(client) as unknown as (
          config: unknown,
          values?: unknown,
        ) => unknown;
        const run: Query = (text, values) => {
          const name = MARKER.exec(text)?.[1];
          return (
            name === undefined ? query(text, values) : query({ name, text, values })
          ) as Promise<pg.QueryResult>;
        };
        wrapper = {
          // kysely passes either (text, values) or a cursor; a cursor goes through as it is.
          query: ((textOrCursor: unknown, values?: readonly unknown[]) =>
            typeof textOrCursor === "string"
              ? run(textOrCursor, values ?? [])
              : query(textOrCursor)) as PostgresPoolClient["query"],
          release: () => client.release(),
        };
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}
