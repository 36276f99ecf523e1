import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Config } from "../../src/core/config.js";
import { messageKey } from "../../src/core/message.js";
import { startApi, type ApiHarness } from "../helpers/api.js";
import { waitFor } from "../helpers/bus.js";
import { captureExchange, type Capture } from "../helpers/capture.js";
import { runBroker, type CliRun } from "../helpers/cli.js";

/**
 * Holding and releasing through the REST API and the CLI: back-dated mappings and the overlaps
 * they are refused for, the held listing, and releases that reach the logical exchange.
 */

// Each CLI run starts Node and compiles TypeScript; one test makes several in a row.
const CLI_TIMEOUT = 300_000;
let api: ApiHarness;
let admin: { token: string };
let bus: Config["amqp"];
let capture: Capture;
beforeAll(async () => {
  api = await startApi();
  admin = { token: api.adminToken };
  bus = api.system.deps.config.amqp;
  capture = await captureExchange(bus.url, bus.ltsExchange);
});

afterAll(async () => {
  await capture?.close();
  await api?.close();
});

function broker(args: string[]): Promise<CliRun> {
  return runBroker(args, {
    database: api.db.name,
    env: {
      AMQP_URL: bus.url,
      PTS_EXCHANGE: bus.ptsExchange,
      LTS_EXCHANGE: bus.ltsExchange,
      EVENTS_EXCHANGE: bus.eventsExchange,
      DEAD_LETTER_EXCHANGE: bus.deadLetterExchange,
    },
  });
}

async function json<T = unknown>(res: Response | Promise<Response>): Promise<T> {
  return (await (await res).json()) as T;
}

async function device(kind: "physical" | "logical", name: string): Promise<number> {
  const body = kind === "physical" ? { name, source_name: "ttn" } : { name };
  const res = await api.call("POST", `/${kind}/devices/`, { ...admin, body });
  expect(res.status).toBe(201);
  return (await json<{ uid: number }>(res)).uid;
}

/** Stores held messages the way the mapper does; returns their correlation ids. */
async function hold(puid: number, reason: string, ...timestamps: string[]): Promise<string[]> {
  const cids: string[] = [];
  for (const timestamp of timestamps) {
    const message = {
      broker_correlation_id: randomUUID(),
      p_uid: puid,
      timestamp,
      timeseries: [{ name: "t", value: 1 }],
    };
    await api.sql(
      `insert into physical_timeseries (physical_uid, ts, json_msg, msg_key, hold_reason)
       values ($1, $2, $3, $4, $5)`,
      [puid, timestamp, JSON.stringify(message), messageKey(message), reason],
    );
    cids.push(message.broker_correlation_id);
  }
  return cids;
}

async function waitForCaptured(n: (c: Capture["messages"]) => boolean): Promise<void> {
  await waitFor(() => n(capture.messages), 10_000, "released messages");
}

/** `broker map start` from an instant. */
function mapStart(puid: number, luid: number, from: string): Promise<CliRun> {
  return broker(["map", "start", "--puid", String(puid), "--luid", String(luid), "--from", from]);
}

function post(body: Record<string, unknown>, query = ""): Promise<Response> {
  return api.call("POST", `/mappings/${query}`, { ...admin, body });
}

describe("back-dated mappings", { timeout: CLI_TIMEOUT }, () => {
  it("are honoured, and refused with the mapping in the way when they would overlap (API and CLI)", async () => {
    const [pd1, pd2, pd3] = [
      await device("physical", "probe 1"),
      await device("physical", "probe 2"),
      await device("physical", "probe 3"),
    ];
    const [ld1, ld2] = [await device("logical", "paddock"), await device("logical", "shed")];
    expect((await post({ pd: pd1, ld: ld1, start_time: "2024-01-01T00:00:00Z" })).status).toBe(201);
    // Probe 2 replaces probe 1 from June: probe 1's mapping ends there.
    expect((await post({ pd: pd2, ld: ld1, start_time: "2024-06-01T00:00:00Z" })).status).toBe(201);
    const first = await json<{ start_time: string; end_time: string }>(
      api.call("GET", `/mappings/physical/latest/${pd1}`, admin),
    );
    expect(first).toMatchObject({
      start_time: "2024-01-01T00:00:00+00:00",
      end_time: "2024-06-01T00:00:00+00:00",
    });

    // Probe 1 elsewhere from March would overlap its own paddock period.
    const own = await post({ pd: pd1, ld: ld2, start_time: "2024-03-01T00:00:00Z" });
    expect(own.status).toBe(400);
    expect(await own.json()).toEqual({
      detail:
        `cannot map physical device ${pd1} to logical device ${ld2} from 2024-03-01T00:00:00+00:00: ` +
        `it would overlap the mapping of physical device ${pd1} (probe 1) to logical device ${ld1} ` +
        `(paddock) from 2024-01-01T00:00:00+00:00 to 2024-06-01T00:00:00+00:00`,
    });
    // Probe 3 into the paddock before probe 2's mapping began would overlap it.
    const current = await post({ pd: pd3, ld: ld1, start_time: "2024-07-01T00:00:00Z" });
    expect(current.status).toBe(201);
    const before = await mapStart(pd2, ld2, "2024-06-15T00:00:00Z");
    expect(before.code).toBe(1);
    expect(before.stdout).toBe("");
    expect(before.stderr.trim()).toBe(
      `error: cannot map physical device ${pd2} to logical device ${ld2} from 2024-06-15T00:00:00+00:00: ` +
        `it would overlap the mapping of physical device ${pd2} (probe 2) to logical device ${ld1} ` +
        `(paddock) from 2024-06-01T00:00:00+00:00 to 2024-07-01T00:00:00+00:00`,
    );
    const naive = await mapStart(pd2, ld2, "2024-07-02T00:00:00");
    // A value its option refuses is a usage error: exit 2, as argparse.
    expect(naive.code).toBe(2);
    expect(naive.stderr).toMatch(/--from.*must be an ISO-8601 date-time with an offset/);

    // Not an overlap: starting where the last one ended.
    const after = await mapStart(pd2, ld2, "2024-07-01T00:00:00Z");
    expect(after.stderr).toBe("");
    expect(after.code).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject({
      start_time: "2024-07-01T00:00:00+00:00",
      end_time: null,
    });
    // The database refuses an overlap that bypasses the checks.
    await expect(
      api.sql(
        "insert into physical_logical_map (physical_uid, logical_uid, start_time, end_time) values ($1, $2, '2024-02-01', '2024-02-02')",
        [pd1, ld2],
      ),
    ).rejects.toMatchObject({ code: "23P01" });
  });
});

describe("held messages", { timeout: CLI_TIMEOUT }, () => {
  it("are listed per device, counted by a new mapping, and released by the API and the CLI", async () => {
    const puid = await device("physical", "late probe");
    const luid = await device("logical", "orchard");
    const early = await hold(puid, "no_mapping", "2024-05-02T00:00:00Z", "2024-05-01T00:00:00Z");
    const reset = await hold(puid, "past_timestamp", "2000-01-01T00:00:00Z");
    const stray = await hold(puid, "no_mapping", "2024-04-01T00:00:00Z");

    const expected = {
      puid,
      count: 4,
      oldest: "2000-01-01T00:00:00+00:00",
      newest: "2024-05-02T00:00:00+00:00",
      reasons: { no_mapping: 3, past_timestamp: 1 },
      releasing: 0,
    };
    expect(await json(api.call("GET", `/mappings/held/?puid=${puid}`, admin))).toEqual([expected]);
    const everyone = await json<{ puid: number }[]>(
      api.call("GET", "/mappings/held/", { token: api.readerToken }),
    );
    expect(everyone).toContainEqual(expected);
    const listed = await broker(["map", "held", "--puid", String(puid)]);
    expect(listed.stderr).toBe("");
    expect(JSON.parse(listed.stdout)).toEqual([expected]);
    const unknown = await broker(["map", "held", "--puid", "999999"]);
    expect(unknown.stderr.trim()).toBe("error: physical device 999999 not found");

    // A mapping from the installation day covers the two early messages, and releases them.
    const res = await post(
      { pd: puid, ld: luid, start_time: "2024-04-30T00:00:00Z" },
      "?release=true",
    );
    expect(res.status).toBe(201);
    expect(res.headers.get("x-held-covered")).toBe("2");
    const body = await json<{ held_covered: number; release: Record<string, unknown> }>(res);
    expect(body).toMatchObject({
      held_covered: 2,
      release: { puid, released: 2, resumed: 0, still_held: 0 },
    });
    await waitForCaptured((c) =>
      early.every((cid) => c.some((x) => x.body.broker_correlation_id === cid)),
    );
    const out = capture.messages.filter((c) => c.body.p_uid === puid);
    // Timestamp order, not storage order; l_uid added; the release named in a header.
    expect(out.map((c) => c.body.broker_correlation_id)).toEqual([early[1], early[0]]);
    expect(out.every((c) => c.body.l_uid === luid)).toBe(true);
    expect(out[0]!.props.headers?.["x-broker-release"]).toBe(body.release.release_id);

    // The stray April message has no mapping; the reset clock's is held for its timestamp.
    const left = await broker(["map", "held", "--puid", String(puid)]);
    expect(JSON.parse(left.stdout)).toEqual([
      {
        ...expected,
        count: 2,
        newest: "2024-04-01T00:00:00+00:00",
        reasons: { no_mapping: 1, past_timestamp: 1 },
      },
    ]);
    const api400 = await api.call("POST", "/mappings/release/", {
      ...admin,
      body: { puid, reasons: ["bogus"] },
    });
    expect(api400.status).toBe(422);
    const readOnly = await api.call("POST", "/mappings/release/", {
      token: api.readerToken,
      body: { puid },
    });
    expect(readOnly.status).toBe(403);
    const none = await json(api.call("POST", "/mappings/release/", { ...admin, body: { puid } }));
    expect(none).toMatchObject({ released: 0, still_held: 1 });
    expect(
      (
        await api.sql<{ n: string }>(
          "select count(*) as n from physical_timeseries where json_msg->>'broker_correlation_id' = $1 and logical_uid is null",
          [stray[0]],
        )
      )[0]!.n,
    ).toBe("1");

    // The operator decides to send the 2000 message: it needs a mapping holding 2000.
    await api.sql(
      "insert into physical_logical_map (physical_uid, logical_uid, start_time, end_time) values ($1, $2, '1999-01-01', '2001-01-01')",
      [puid, luid],
    );
    const cli = await broker([
      "map",
      "release",
      "--puid",
      String(puid),
      "--reason",
      "past_timestamp",
    ]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ puid, released: 1, resumed: 0, still_held: 0 });
    await waitForCaptured((c) => c.some((x) => x.body.broker_correlation_id === reset[0]));
    const badReason = await broker(["map", "release", "--puid", String(puid), "--reason", "bogus"]);
    expect(badReason.code).toBe(2);
    expect(badReason.stderr).toMatch(/unknown reason bogus/);
  });
});

describe("mapping times chosen by the operator", () => {
  async function current(puid: number): Promise<{ start_time: string; end_time: string | null }[]> {
    return api.sql(
      "select start_time::text, end_time::text from physical_logical_map where physical_uid = $1 order by start_time",
      [puid],
    );
  }

  it(
    "ld cpd --map --from starts the mapping at the given time; map end --at ends it there, refusing a time before its start or in the future",
    async () => {
      const puid = await device("physical", `cpd-${randomUUID()}`);
      const usage = await broker([
        "ld",
        "cpd",
        "--puid",
        String(puid),
        "--from",
        "2024-01-01T00:00:00Z",
      ]);
      expect(usage.code).not.toBe(0);
      expect(usage.stderr).toMatch(/--from needs --map/);

      const cpd = await broker([
        "ld",
        "cpd",
        "--puid",
        String(puid),
        "--map",
        "--from",
        "2024-01-01T00:00:00Z",
      ]);
      expect(cpd.code).toBe(0);
      expect(JSON.parse(cpd.stdout)).toMatchObject({ start_time: "2024-01-01T00:00:00+00:00" });

      const early = await broker([
        "map",
        "end",
        "--puid",
        String(puid),
        "--at",
        "2023-12-31T00:00:00Z",
      ]);
      expect(early.code).not.toBe(0);
      expect(early.stderr).toMatch(/must end after it starts/);
      const future = await broker([
        "map",
        "end",
        "--puid",
        String(puid),
        "--at",
        "2999-01-01T00:00:00Z",
      ]);
      expect(future.code).not.toBe(0);
      expect(future.stderr).toMatch(/in the future/);
      expect((await current(puid))[0]!.end_time).toBeNull();

      const ended = await broker([
        "map",
        "end",
        "--puid",
        String(puid),
        "--at",
        "2024-06-01T00:00:00Z",
      ]);
      expect(ended.code).toBe(0);
      expect(await current(puid)).toEqual([
        { start_time: "2024-01-01 00:00:00+00", end_time: "2024-06-01 00:00:00+00" },
      ]);
    },
    CLI_TIMEOUT,
  );

  it("PATCH /mappings/physical/end/{uid}?end_time= ends the mapping at that time, 400 before its start", async () => {
    const puid = await device("physical", `end-${randomUUID()}`);
    const luid = await device("logical", `end-${randomUUID()}`);
    const created = await api.call("POST", "/mappings/", {
      ...admin,
      body: { pd: puid, ld: luid, start_time: "2024-01-01T00:00:00Z" },
    });
    expect(created.status).toBe(201);
    const early = await api.call(
      "PATCH",
      `/mappings/physical/end/${puid}?end_time=2023-01-01T00:00:00Z`,
      admin,
    );
    expect(early.status).toBe(400);
    expect(await early.text()).toMatch(/must end after it starts/);
    const res = await api.call(
      "PATCH",
      `/mappings/physical/end/${puid}?end_time=2024-02-01T00:00:00%2B10:00`,
      admin,
    );
    expect(res.status).toBe(204);
    expect(await current(puid)).toEqual([
      { start_time: "2024-01-01 00:00:00+00", end_time: "2024-01-31 14:00:00+00" },
    ]);
  });
});
