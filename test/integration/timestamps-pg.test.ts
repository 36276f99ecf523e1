import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { readTimestamp } from "../../src/core/timestamps.js";
import { pythonIsoformat } from "../../src/mqtt/iso-time.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { Random } from "../helpers/random.js";

/**
 * Our timestamp grammar must be PostgreSQL's (or stricter): every string a source lets through
 * is one that `timestamptz` takes, naming the same instant. Checked against the real server on a
 * few thousand generated strings (fixed seed) around every edge of the grammar.
 */

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.handle.pool.query(`
    create function pg_temp_try_ts(t text) returns text language plpgsql as $$
    begin
      return to_char((t::timestamptz) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US');
    exception when others then
      return null;
    end $$`);
});

afterAll(async () => {
  await db?.drop();
});

/** PostgreSQL's reading of each string (UTC, microseconds), or null when it refuses it. */
async function postgresReads(texts: readonly string[]): Promise<(string | null)[]> {
  const client = await db.handle.pool.connect();
  try {
    await client.query("set timezone = 'UTC'");
    const { rows } = await client.query<{ v: string | null }>(
      "select pg_temp_try_ts(t) as v from unnest($1::text[]) with ordinality as x(t, n) order by n",
      [texts],
    );
    return rows.map((r) => r.v);
  } finally {
    client.release();
  }
}

function candidate(r: Random): string {
  const two = (max: number): string => String(r.int(max)).padStart(2, "0");
  const year = r.pick([
    "0000",
    "0001",
    "0099",
    "1970",
    "2024",
    "2255",
    "2256",
    "9999",
    r.digits(4),
  ]);
  const month = r.chance(0.8) ? r.pick(["01", "02", "04", "12"]) : two(15);
  const day = r.chance(0.7) ? r.pick(["01", "28", "29", "30", "31"]) : two(34);
  const hour = r.chance(0.8) ? two(24) : two(27);
  const minute = r.chance(0.8) ? two(60) : two(63);
  let time = `${hour}:${minute}`;
  if (r.chance(0.8)) {
    time += `:${r.chance(0.8) ? two(60) : two(63)}`;
    if (r.chance(0.5)) {
      time += `${r.chance(0.85) ? "." : ","}${r.digits(r.chance(0.8) ? 1 + r.int(6) : r.int(11))}`;
    }
  }
  const sep = r.chance(0.9) ? r.pick(["T", "t", " "]) : r.pick(["", "_", "  ", "TT"]);
  const hh = r.chance(0.7) ? r.pick(["00", "05", "10", "14", "15"]) : two(100);
  const mm = r.chance(0.7) ? r.pick(["00", "30", "45", "59"]) : two(100);
  const sign = r.pick(["+", "-"]);
  const zone = r.pick([
    "Z",
    "z",
    "",
    `${sign}${hh}`,
    `${sign}${hh}:${mm}`,
    `${sign}${hh}${mm}`,
    `${sign}${hh}:${mm}:00`,
    `${sign}${r.int(10)}`,
    " Z",
  ]);
  let text = `${year}-${month}-${day}${sep}${time}${zone}`;
  if (r.chance(0.05)) {
    const at = r.int(text.length + 1);
    text = text.slice(0, at) + r.pick([" ", "x", "0", "-", ":", "\u00e9"]) + text.slice(at);
  }
  return text;
}

describe("the timestamp grammar is PostgreSQL's", () => {
  it("every generated string we accept, timestamptz accepts as the same instant", async () => {
    const r = new Random(13);
    const texts = Array.from({ length: 4000 }, () => candidate(r));
    const pg = await postgresReads(texts);
    let accepted = 0;
    const disagreements: string[] = [];
    texts.forEach((text, i) => {
      const ours = readTimestamp(text, "utc");
      if (!ours.ok) {
        return;
      }
      accepted++;
      const theirs = pg[i];
      if (theirs === null) {
        disagreements.push(`${text}: PostgreSQL refuses it`);
        return;
      }
      // PostgreSQL rounds digits beyond the microsecond, we drop them: compare at 6 digits.
      if (ours.value.fraction.length <= 6) {
        const mine = pythonIsoformat(ours.value.epochMicros, 0).slice(0, 19);
        const micros = ours.value.fraction.padEnd(6, "0").slice(0, 6);
        if (`${mine}.${micros}` !== theirs) {
          disagreements.push(`${text}: ours ${mine}.${micros}, PostgreSQL's ${theirs}`);
        }
      }
    });
    expect(disagreements).toEqual([]);
    // The generator reaches both sides of the grammar.
    expect(accepted).toBeGreaterThan(500);
    expect(accepted).toBeLessThan(texts.length - 500);
  });

  it("refuses what PostgreSQL refuses, naming the problem, never the value", () => {
    for (const text of [
      "2024-05-01T10:00:00+16:00",
      "2024-05-01T10:00:00+99:99",
      "2024-05-01T10:00:00,5Z",
      "0000-01-01T00:00:00Z",
      "2024-02-30T00:00:00Z",
      "2024-05-01T10Z",
    ]) {
      const t = readTimestamp(text);
      expect(t.ok, text).toBe(false);
      expect(t.ok ? "" : t.problem).not.toContain("2024");
    }
    expect(readTimestamp("2024-05-01T10:00:00")).toMatchObject({ reason: "naive_timestamp" });
    expect(readTimestamp("2024-05-01T10:00:00", "utc").ok).toBe(true);
  });

  it("bounds the instant PostgreSQL stores, after it rounds digits finer than a microsecond", async () => {
    // PostgreSQL rounds the first two into year 10000, which it keeps but which would not be read
    // again as ours once written back: refused at the door like every year past 9999.
    const texts = [
      "9999-12-31T23:59:59.9999999Z",
      "9999-12-31T23:59:59.999999999Z",
      "9999-12-31T23:59:59.9999994Z",
      "9999-12-31T23:59:59.999999Z",
    ];
    const pg = await postgresReads(texts);
    expect(pg.map((v) => v?.slice(0, 5))).toEqual(["10000", "10000", "9999-", "9999-"]);
    expect(texts.map((t) => readTimestamp(t).ok)).toEqual([false, false, true, true]);
  });

  it("keeps microseconds exact after 2255 and for every year up to 9999", () => {
    for (const text of ["2256-01-01T00:00:00.000001Z", "9999-12-31T23:59:59.999999+15:59"]) {
      const t = readTimestamp(text);
      expect(t.ok).toBe(true);
      if (t.ok) {
        expect(pythonIsoformat(t.value.epochMicros, t.value.offsetMinutes)).toBe(
          text.replace("Z", "+00:00"),
        );
      }
    }
  });
});
