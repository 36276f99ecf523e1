import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createPhysicalDevice } from "../../src/db/repositories/physical-devices.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { runBroker, type CliRun } from "../helpers/cli.js";

// Each run starts Node and compiles TypeScript (about a second); a busy machine needs more room.
const CLI_TIMEOUT = 300_000;

let testDb: TestDatabase;
const extraDbs: TestDatabase[] = [];
let tmp: string;

type Run = CliRun;

/** What IoTa printed for an unknown device (exit 0), with our note on stderr. */
function expectNotFound(run: Run, stdout: string, what: string): void {
  expect(run).toEqual({ code: 0, stdout, stderr: `note: ${what} not found\n` });
}

/** Runs `broker …` against `database` (the file's test database by default). */
function broker(args: string[], options: { stdin?: string; database?: string } = {}): Promise<Run> {
  return runBroker(args, { database: options.database ?? testDb.name, stdin: options.stdin });
}

/**
 * A failed run: exit `code` (1, or 2 for a usage error as argparse), nothing on stdout, exactly
 * one line on stderr matching `pattern`.
 */
function expectOneLineError(run: Run, pattern: RegExp, code = 1): void {
  expect(run.code).toBe(code);
  expect(run.stdout).toBe("");
  expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(run.stderr.trimEnd()).toMatch(pattern);
}

function json(run: Run): unknown {
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout);
}

beforeAll(async () => {
  testDb = await createTestDatabase();
  tmp = await mkdtemp(join(tmpdir(), "broker-cli-"));
});

afterAll(async () => {
  await Promise.all([testDb.drop(), ...extraDbs.map((db) => db.drop())]);
  await rm(tmp, { recursive: true, force: true });
});

describe("broker migrate", { timeout: CLI_TIMEOUT }, () => {
  it("migrates an empty database, then has nothing to do; refuses IoTa version 1", async () => {
    const [empty, v1] = await Promise.all([
      createTestDatabase({ empty: true }),
      createTestDatabase({ empty: true }),
    ]);
    extraDbs.push(empty, v1);
    await v1.handle.pool.query(
      "create table version (version integer not null); insert into version values (1)",
    );

    const [first, refused] = await Promise.all([
      broker(["migrate"], { database: empty.name }),
      broker(["migrate"], { database: v1.name }),
    ]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^applied 002_iota_base\.sql \(\d+ ms\)\napplied 003_/);
    const version = /schema version (\d+)\n$/.exec(first.stdout)?.[1];
    expect(Number(version)).toBeGreaterThanOrEqual(3);
    expectOneLineError(refused, /^error: .*version 1/);

    const second = await broker(["migrate"], { database: empty.name });
    expect(second).toEqual({
      code: 0,
      stdout: `schema version ${version} (up to date)\n`,
      stderr: "",
    });
  });
});

describe("broker ld", { timeout: CLI_TIMEOUT }, () => {
  it("creates from --json, --file and stdin, prints JSON, never echoes the input", async () => {
    const file = join(tmp, "ld.json");
    await writeFile(file, JSON.stringify({ name: "from file" }));
    const [fromJson, fromFile, fromStdin] = await Promise.all([
      broker([
        "ld",
        "create",
        "--json",
        '{"uid": 77, "name": "cli ld", "location": {"lat": -33.5, "long": 151.25}, "properties": {"k": "v"}}',
      ]),
      broker(["ld", "create", "--file", file]),
      broker(["ld", "create", "--file", "-"], { stdin: '{"name": "from stdin"}' }),
    ]);
    const ld = json(fromJson) as { uid: number };
    expect(ld).toEqual({
      uid: ld.uid,
      name: "cli ld",
      location: { lat: -33.5, long: 151.25 },
      last_seen: null,
      properties: { k: "v" },
    });
    expect(ld.uid).not.toBe(77);
    expect(json(fromFile)).toMatchObject({
      name: "from file",
      location: { lat: null, long: null },
    });
    expect(json(fromStdin)).toMatchObject({ name: "from stdin" });

    const [got, gotProps, absent, list] = await Promise.all([
      broker(["ld", "get", "--luid", String(ld.uid)]),
      broker(["ld", "get", "--luid", String(ld.uid), "--properties"]),
      broker(["ld", "get", "--luid", "999999"]),
      broker(["ld", "ls"]),
    ]);
    expect(json(got)).toEqual({
      uid: ld.uid,
      name: "cli ld",
      location: { lat: -33.5, long: 151.25 },
      last_seen: null,
    });
    expect(json(gotProps)).toMatchObject({ properties: { k: "v" } });
    expectNotFound(absent, "null\n", "logical device 999999");
    const all = json(list) as { uid: number }[];
    expect(all.map((d) => d.uid)).toContain(ld.uid);
    expect(all.every((d) => !("properties" in d))).toBe(true);
  });

  it("rejects bad input with one clear line and exit 1", async () => {
    const runs = await Promise.all([
      broker(["ld", "create", "--json", "not json s3cret"]),
      broker(["ld", "create", "--json", "[1, 2]"]),
      broker(["ld", "create", "--json", '{"location": {"lat": 1, "long": 2}}']),
      broker(["ld", "create"]),
      broker(["ld", "create", "--json", "{}", "--file", "x"]),
      broker(["ld", "get", "--luid", "1.5"]),
      broker(["ld", "get"]),
      broker(["ld", "get", "--luid", "1", "--bogus"]),
      broker(["ld", "create", "--json", '{"name": "n", "properties": {"depth": 1e400}}']),
      broker(["ld", "create", "--json", '{"name": "n\\u0000"}']),
      broker(["ld", "create", "--json", '{"name": "n", "properties": {"__proto__": {}}}']),
    ]);
    // How the command was called: exit 2, as argparse. What it was given: exit 1.
    expectOneLineError(runs[0]!, /^error: --json is not valid JSON$/, 2);
    expect(runs[0]!.stderr).not.toContain("s3cret");
    expectOneLineError(runs[1]!, /^error: --json must be a JSON object$/, 2);
    expectOneLineError(runs[2]!, /^error: invalid logical device: name: /);
    expectOneLineError(runs[3]!, /^error: give exactly one of --json or --file$/, 2);
    expectOneLineError(runs[4]!, /cannot be used with/, 2);
    expectOneLineError(runs[5]!, /--luid.*must be a positive integer/, 2);
    expectOneLineError(runs[6]!, /required option '--luid <uid>' not specified/, 2);
    expectOneLineError(runs[7]!, /unknown option '--bogus'/, 2);
    // The same storage rules as the API: nothing is silently stored as null or truncated.
    expectOneLineError(runs[8]!, /^error: invalid logical device: properties: .*too large/);
    expectOneLineError(runs[9]!, /^error: invalid logical device: name: contains a NUL/);
    expectOneLineError(runs[10]!, /^error: invalid logical device: properties: .*__proto__/);
  });
});

describe("broker pd and map", { timeout: CLI_TIMEOUT }, () => {
  it("gets, lists (JSON and plain), maps, lists history and ends mappings", async () => {
    const db = testDb.handle.db;
    const pd = await createPhysicalDevice(db, {
      source_name: "greenbrain",
      name: "cli pd",
      last_seen: "2024-04-14T03:52:56.123456Z",
      properties: { p: 1 },
      source_ids: { station: 7 },
    });
    const other = await createPhysicalDevice(db, {
      source_name: "greenbrain",
      name: "cli pd unmapped",
    });
    const ld = json(await broker(["ld", "create", "--json", '{"name": "cli target"}'])) as {
      uid: number;
    };

    const [got, gotProps, absent, badUid] = await Promise.all([
      broker(["pd", "get", "--puid", String(pd.uid)]),
      broker(["pd", "get", "--puid", String(pd.uid), "--properties"]),
      broker(["pd", "get", "--puid", "999999"]),
      broker(["pd", "get", "--puid", "abc"]),
    ]);
    const { properties: _p, ...withoutProps } = pd;
    expect(json(got)).toEqual({ ...withoutProps, location: { lat: null, long: null } });
    expect(json(gotProps)).toEqual({ ...pd, location: { lat: null, long: null } });
    expectNotFound(absent, "null\n", "physical device 999999");
    expectOneLineError(badUid, /--puid.*'abc' is invalid/, 2);

    const started = await broker([
      "map",
      "start",
      "--puid",
      String(pd.uid),
      "--luid",
      String(ld.uid),
    ]);
    const mapping = json(started) as { start_time: string };
    expect(mapping).toMatchObject({
      pd: { ...pd, location: { lat: null, long: null } },
      ld: { uid: ld.uid, name: "cli target" },
      end_time: null,
      is_active: true,
    });

    const [again, unknownLd, list, plain, history] = await Promise.all([
      broker(["map", "start", "--puid", String(pd.uid), "--luid", String(ld.uid)]),
      broker(["map", "start", "--puid", String(other.uid), "--luid", "999999"]),
      broker(["pd", "ls", "--source", "greenbrain"]),
      broker(["pd", "ls", "--source", "greenbrain", "--plain"]),
      broker(["map", "ls", "--puid", String(pd.uid)]),
    ]);
    expectOneLineError(
      again,
      /^error: physical device \d+ \(cli pd\) is already mapped to logical device/,
    );
    expectOneLineError(unknownLd, /^error: logical device 999999 not found$/);
    expect(json(list)).toEqual(
      [withoutProps, { ...other, properties: undefined }].map((d) =>
        JSON.parse(JSON.stringify({ ...d, location: { lat: null, long: null } })),
      ),
    );
    expect(plain.stdout).toBe(
      `${String(pd.uid).padStart(5)}   ${"cli pd".padEnd(48)}   2024-04-14T03:52+00:00 --> ` +
        `${String(ld.uid).padStart(5)}   ${"cli target".padEnd(48)}   Never${" ".repeat(17)}\n` +
        `${String(other.uid).padStart(5)}   ${"cli pd unmapped".padEnd(48)}   Never${" ".repeat(17)}\n`,
    );
    expect(json(history)).toEqual([mapping]);

    const ended = await broker(["map", "end", "--puid", String(pd.uid)]);
    expect(ended).toEqual({ code: 0, stdout: "", stderr: "" });
    const [byLd, both, neither, endUnknown, lsUnknown, endAgain] = await Promise.all([
      broker(["map", "ls", "--luid", String(ld.uid)]),
      broker(["map", "end", "--puid", "1", "--luid", "1"]),
      broker(["map", "ls"]),
      broker(["map", "end", "--puid", "999999"]),
      broker(["map", "ls", "--luid", "999999"]),
      broker(["map", "end", "--puid", String(pd.uid)]),
    ]);
    // IoTa did nothing (end) or listed nothing (ls) for an unknown device, and exited 0.
    expectNotFound(endUnknown, "", "physical device 999999");
    expectNotFound(lsUnknown, "[]\n", "logical device 999999");
    // Nothing current to end on a known device: a no-op, as IoTa.
    expect(endAgain).toEqual({ code: 0, stdout: "", stderr: "" });
    const after = json(byLd) as { end_time: string | null }[];
    expect(after).toHaveLength(1);
    expect(after[0]?.end_time).not.toBeNull();
    expectOneLineError(both, /cannot be used with/, 2);
    expectOneLineError(neither, /^error: give one of --puid or --luid$/, 2);
  });

  it("creates, updates, copies, toggles and removes (the rest of IoTa's pd/ld/map commands)", async () => {
    const created = json(
      await broker([
        "pd",
        "create",
        "--json",
        '{"name": "rest pd", "source_name": "wombat", "source_ids": {"serial_no": "R1"}, "properties": {"a": 1}}',
      ]),
    ) as { uid: number };
    const puid = String(created.uid);
    const [updated, badSource, missing] = await Promise.all([
      broker([
        "pd",
        "up",
        "--puid",
        puid,
        "--json",
        '{"uid": 1, "name": "rest pd 2", "properties": {"b": 2}}',
      ]),
      broker(["pd", "up", "--puid", puid, "--json", '{"source_name": "nope"}']),
      broker(["pd", "up", "--puid", "999999", "--json", '{"name": "x"}']),
    ]);
    expect(json(updated)).toEqual({ ...created, name: "rest pd 2", properties: { b: 2 } });
    expectOneLineError(badSource, /^error: unknown source$/);
    expectOneLineError(missing, /^error: physical device 999999 not found$/);

    const unmapped = json(await broker(["pd", "lum", "--source", "wombat"])) as { uid: number }[];
    expect(unmapped.map((d) => d.uid)).toContain(created.uid);

    const mapping = json(await broker(["ld", "cpd", "--puid", puid, "--map"])) as {
      ld: { uid: number; name: string };
      is_active: boolean;
    };
    expect(mapping).toMatchObject({
      pd: { uid: created.uid },
      ld: { name: "rest pd 2" },
      is_active: true,
    });
    const luid = String(mapping.ld.uid);

    const [paused, renamed, noMapping] = await Promise.all([
      broker(["map", "toggle", "--luid", luid, "--disable"]),
      broker(["ld", "up", "--luid", luid, "--json", '{"name": "renamed ld"}']),
      broker(["map", "toggle", "--puid", "999999", "--enable"]),
    ]);
    expect(paused).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(json(renamed)).toMatchObject({ uid: mapping.ld.uid, name: "renamed ld" });
    expectOneLineError(noMapping, /^error: physical device 999999 has no current mapping$/);
    const [history] = json(await broker(["map", "ls", "--luid", luid])) as { is_active: boolean }[];
    expect(history?.is_active).toBe(false);

    const removedPd = json(await broker(["pd", "rm", "--puid", puid]));
    expect(removedPd).toMatchObject({ uid: created.uid, name: "rest pd 2" });
    const [removedLd, gone, removedAgain] = await Promise.all([
      broker(["ld", "rm", "--luid", luid]),
      broker(["pd", "get", "--puid", puid]),
      broker(["pd", "rm", "--puid", puid]),
    ]);
    expect(json(removedLd)).toMatchObject({ uid: mapping.ld.uid });
    expectNotFound(gone, "null\n", `physical device ${puid}`);
    expectNotFound(removedAgain, "null\n", `physical device ${puid}`);
    const [ldGone, ldRemovedAgain] = await Promise.all([
      broker(["ld", "get", "--luid", luid]),
      broker(["ld", "rm", "--luid", luid]),
    ]);
    expectNotFound(ldGone, "null\n", `logical device ${luid}`);
    expectNotFound(ldRemovedAgain, "null\n", `logical device ${luid}`);
  });

  it("reports an unreachable database in one line", async () => {
    const run = await runBroker(["pd", "ls"], {
      database: "none",
      env: { PGHOST: "127.0.0.1", PGPORT: "1" },
    });
    expectOneLineError(run, /^error: connect ECONNREFUSED 127\.0\.0\.1:1$/);
  });
});
