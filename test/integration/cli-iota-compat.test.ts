import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { runBroker, spawnBroker, type CliRun } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { PG } from "../helpers/env.js";
import { datetimeStrings, python310FromIsoformatAccepts } from "../helpers/python-iso.js";

/**
 * IoTa's broker-cli invocations (every form its documentation and code show), run unchanged
 * against ours: the same stdout and exit status as IoTa, except the departures listed in
 * doc/compatibility.md. IoTa's outputs are written here as IoTa's code produces them:
 * `json.dumps(obj, indent=2)` of the pydantic model, datetimes as `isoformat()`.
 */

const CLI_TIMEOUT = 600_000;

let testDb: TestDatabase;

beforeAll(async () => {
  testDb = await createTestDatabase();
});

afterAll(async () => {
  await testDb.drop();
});

const outputs: string[] = [];

async function cli(args: string, stdin?: string): Promise<CliRun> {
  const run = await runBroker(splitArgs(args), { database: testDb.name, stdin });
  outputs.push(run.stdout);
  return run;
}

/** Splits a command line as a shell would for these tests: words, and '…' quoted words. */
function splitArgs(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

/** Python's `json.dumps(value, indent=2)` (ensure_ascii; the values here are ASCII). */
function py(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** IoTa's success: exit 0, exactly `stdout`. Our notes on stderr are allowed. */
function expectIota(run: CliRun, stdout: string): void {
  expect(run.stdout).toBe(stdout);
  expect(run.code).toBe(0);
}

/** Where IoTa failed (a traceback, exit 1): ours fails with exit 1 and one line. */
function expectFailure(run: CliRun, code = 1): void {
  expect(run.code).toBe(code);
  expect(run.stdout).toBe("");
  expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
}

const NO_LOCATION = { lat: null, long: null };

describe("IoTa's broker-cli invocations", { timeout: CLI_TIMEOUT }, () => {
  it("pd, ld and map behave as IoTa's, by exit status and stdout", async () => {
    // pd create (--json, --file -): the created device, properties included.
    const created = await cli(
      `pd create --json '{"name": "Weather 1", "source_name": "ydoc", "location": {"lat": -33.5, "long": 151.25}, "last_seen": "2022-05-06T10:30:00.5+00:00", "source_ids": {"serial_no": "S1"}, "properties": {"k": "v"}}'`,
    );
    const pdUid = (JSON.parse(created.stdout) as { uid: number }).uid;
    const pd = {
      uid: pdUid,
      name: "Weather 1",
      location: { lat: -33.5, long: 151.25 },
      last_seen: "2022-05-06T10:30:00.500000+00:00",
      properties: { k: "v" },
      source_name: "ydoc",
      source_ids: { serial_no: "S1" },
    };
    expectIota(created, py(pd));
    const { properties: _p, ...pdNoProps } = pd;
    const fromStdin = await cli("pd create --file -", '{"name": "Soil 2", "source_name": "ttn"}');
    const pd2Uid = (JSON.parse(fromStdin.stdout) as { uid: number }).uid;
    const pd2 = {
      uid: pd2Uid,
      name: "Soil 2",
      location: NO_LOCATION,
      last_seen: null,
      properties: {},
      source_name: "ttn",
      source_ids: {},
    };
    expectIota(fromStdin, py(pd2));
    const { properties: _p2, ...pd2NoProps } = pd2;

    // pd get / ls / lum, with IoTa's documented abbreviations (argparse prefixes).
    const [get, getProps, getAbbrev, absent, ls, lsSource, lum] = await Promise.all([
      cli(`pd get --puid ${pdUid}`),
      cli(`pd get --puid ${pdUid} --properties`),
      cli(`pd get --pu ${pdUid} --prop`),
      cli("pd get --puid 999999"),
      cli("pd ls"),
      cli("pd ls --so ydoc --prop"),
      cli("pd lum --source ttn"),
    ]);
    expectIota(get, py(pdNoProps));
    expectIota(getProps, py(pd));
    expectIota(getAbbrev, py(pd));
    expectIota(absent, "null\n");
    expectIota(ls, py([pdNoProps, pd2NoProps]));
    expectIota(lsSource, py([pd]));
    expectIota(lum, py([pd2NoProps]));

    // ld create: a departure (JSON, where IoTa printed a Python repr).
    const ldCreated = await cli(`ld create --json '{"name": "Site A", "properties": {"x": 1}}'`);
    const ldUid = (JSON.parse(ldCreated.stdout) as { uid: number }).uid;
    const ld = { uid: ldUid, name: "Site A", location: NO_LOCATION, last_seen: null };
    expect(ldCreated.code).toBe(0);
    expect(ldCreated.stdout).toBe(py({ ...ld, properties: { x: 1 } }));

    // map start: the current mapping, full objects with properties.
    const started = await cli(`map start --puid ${pdUid} --luid ${ldUid}`);
    const startTime = (JSON.parse(started.stdout) as { start_time: string }).start_time;
    const mapping = {
      pd,
      ld: { ...ld, properties: { x: 1 } },
      start_time: startTime,
      end_time: null,
      is_active: true,
    };
    expectIota(started, py(mapping));

    // --plain: uid in 5, name in 48, last seen to the minute or Never, then --> and the LD.
    const [plain, plainAbbrev, lumPlain, ldGet, ldLs, mapLs] = await Promise.all([
      cli("pd ls --plain"),
      cli("pd ls --pl --so ydoc"),
      cli("pd lum --plain"),
      cli(`ld get --luid ${ldUid}`),
      cli("ld ls --prop"),
      cli(`map ls --luid ${ldUid}`),
    ]);
    const pdLine = `${String(pdUid).padStart(5)}   ${"Weather 1".padEnd(48)}   2022-05-06T10:30+00:00`;
    const ldLine = `${String(ldUid).padStart(5)}   ${"Site A".padEnd(48)}   ${"Never".padEnd(22)}`;
    const pd2Line = `${String(pd2Uid).padStart(5)}   ${"Soil 2".padEnd(48)}   ${"Never".padEnd(22)}`;
    expectIota(plain, `${pdLine} --> ${ldLine}\n${pd2Line}\n`);
    expectIota(plainAbbrev, `${pdLine} --> ${ldLine}\n`);
    expectIota(lumPlain, `${pd2Line}\n`);
    expectIota(ldGet, py(ld));
    expectIota(ldLs, py([{ ...ld, properties: { x: 1 } }]));
    expectIota(mapLs, py([mapping]));

    // pd up / ld up: shallow overlay of the given keys (uid ignored); prints the device.
    const [pdUp, ldUp, pdUpUnknown, ldUpUnknown] = await Promise.all([
      cli(`pd up --puid ${pd2Uid} --json '{"uid": 1, "name": "Soil 2b", "properties": {"n": 2}}'`),
      cli(`ld up --luid ${ldUid} --json '{"properties": {"y": 2}}'`),
      cli(`pd up --puid 999999 --json '{"name": "x"}'`),
      cli(`ld up --luid 999999 --json '{"name": "x"}'`),
    ]);
    expectIota(pdUp, py({ ...pd2, name: "Soil 2b", properties: { n: 2 } }));
    expectIota(ldUp, py({ ...ld, properties: { y: 2 } }));
    expectFailure(pdUpUnknown);
    expectFailure(ldUpUnknown);

    // map toggle / end print nothing; unknown devices: IoTa failed (toggle) or did nothing (end).
    const [toggled, toggleUnknown, mapStartUnknown] = await Promise.all([
      cli(`map toggle --puid ${pdUid} --disable`),
      cli("map toggle --luid 999999 --enable"),
      cli(`map start --puid 999999 --luid ${ldUid}`),
    ]);
    expectIota(toggled, "");
    expectFailure(toggleUnknown);
    expectFailure(mapStartUnknown);
    const [ended, endUnknown, lsUnknown] = await Promise.all([
      cli(`map end --luid ${ldUid}`),
      cli("map end --puid 999999"),
      cli("map ls --luid 999999"),
    ]);
    expectIota(ended, "");
    expectIota(endUnknown, "");
    expectIota(lsUnknown, "[]\n");

    // ld cpd: without --map nothing; with --map the new current mapping.
    const [copied, copiedMapped] = [
      await cli(`ld cpd --puid ${pd2Uid}`),
      await cli(`ld cpd --pu ${pdUid} --map`),
    ];
    expectIota(copied, "");
    const cpdMapping = JSON.parse(copiedMapped.stdout) as {
      ld: { uid: number };
      start_time: string;
    };
    expectIota(
      copiedMapped,
      py({
        pd,
        ld: {
          uid: cpdMapping.ld.uid,
          name: "Weather 1",
          location: pd.location,
          last_seen: pd.last_seen,
          properties: {},
        },
        start_time: cpdMapping.start_time,
        end_time: null,
        is_active: true,
      }),
    );

    // rm: IoTa deletes the map rows, then the device, and prints it; unknown prints null.
    const [pdRm, ldRm] = await Promise.all([
      cli(`pd rm --puid ${pd2Uid}`),
      cli(`ld rm --luid ${ldUid}`),
    ]);
    expectIota(pdRm, py({ ...pd2, name: "Soil 2b", properties: { n: 2 } }));
    expectIota(ldRm, py({ ...ld, properties: { y: 2 } }));
    const [pdRmAgain, ldRmAgain, ldGetGone] = await Promise.all([
      cli(`pd rm --puid ${pd2Uid}`),
      cli(`ld rm --luid ${ldUid}`),
      cli(`ld get --luid ${ldUid}`),
    ]);
    expectIota(pdRmAgain, "null\n");
    expectIota(ldRmAgain, "null\n");
    expectIota(ldGetGone, "null\n");
  });

  it("users behave as IoTa's, except the documented departures", async () => {
    // One after the other: users ls lists in uid order.
    const added = await cli("users add -u alice -p secret1 -a");
    const addedDisabled = await cli("users add -u bob -p secret2 -d");
    expectIota(added, "");
    expectIota(addedDisabled, "");
    // Departure: users ls prints JSON (IoTa printed a Python list literal).
    expectIota(await cli("users ls"), py(["alice", "bob"]));
    // Departure: a new token is issued (only hashes are stored).
    const token = await cli("users token -u alice");
    expect(token.code).toBe(0);
    expect(token.stdout).toMatch(/^\S{20,}\n$/);
    for (const run of [
      await cli("users token -u alice --refresh"),
      await cli("users token -u bob --enable"),
    ]) {
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^\S{20,}\n$/);
    }
    expectIota(await cli("users token -u bob --disable"), "");
    expectIota(await cli("users chng -u alice -p secret3"), "");
    // Unknown users: IoTa printed nothing and exited 0.
    expectIota(await cli("users chng -u nobody -p x"), "");
    expectIota(await cli("users rm -u nobody"), "");
    expectIota(await cli("users rm -u bob"), "");
    expectIota(await cli("users ls"), py(["alice"]));
  });

  it("usage errors exit 2 as argparse's; an ambiguous prefix is one", async () => {
    const [ambiguous, unknown, missing] = await Promise.all([
      cli("pd ls --p"),
      cli("pd get --puid 1 --bogus"),
      cli("pd get"),
    ]);
    for (const run of [ambiguous, unknown, missing]) {
      expectFailure(run, 2);
    }
    expect(ambiguous.stderr).toMatch(/ambiguous option: --p could match --plain, --properties/);
  });

  it("ends quietly when its reader goes away (pd ls --plain | head -1)", async () => {
    await testDb.handle.pool.query(
      `insert into physical_devices (source_name, name)
       select 'ttn', 'pipe ' || g from generate_series(1, 5000) g`,
    );
    const child = spawnBroker(["pd", "ls", "--plain"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        PGHOST: PG.host,
        PGPORT: String(PG.port),
        PGUSER: PG.user,
        PGPASSWORD: PG.password,
        PGDATABASE: testDb.name,
      },
    });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const firstLine = await new Promise<string>((resolve) => {
      child.stdout!.once("data", (d: Buffer) => {
        // As head does: take the first line, then close the pipe.
        child.stdout!.destroy();
        resolve(d.toString().split("\n")[0]!);
      });
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(firstLine).toMatch(/^\s+\d+ {3}/);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
  });

  it("wrote every datetime in a form Python 3.10's fromisoformat reads", () => {
    const found = outputs.flatMap((out) => {
      try {
        return datetimeStrings(JSON.parse(out));
      } catch {
        return [];
      }
    });
    expect(found.length).toBeGreaterThan(10);
    expect(found.filter((t) => !python310FromIsoformatAccepts(t))).toEqual([]);
  });
});
