import { randomUUID } from "node:crypto";

import mqtt from "mqtt";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { QUEUE_NAMES } from "../../src/bus/topology.js";
import { WOMBAT_SCRIPTS } from "../../src/sources/wombat/config-scripts.js";
import { ADMIN, READER } from "../helpers/api.js";
import { launchBrowser, startWeb, type WebHarness } from "../helpers/browser.js";
import { openTestChannel, queueCount, waitFor } from "../helpers/bus.js";
import { captureExchange, type Capture } from "../helpers/capture.js";
import { freePort } from "../helpers/ports.js";

/**
 * The operator's pages beyond the device pages, in a real browser against real servers: the
 * Wombat panel (retained scripts on the real Mosquitto), health, dead letters, the event log,
 * tracing a reading, replacing a sensor, read-only refusals, and a phone-width screen.
 */

const MQTT_URL = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
/** This run's own topic root on the shared broker. */
const ROOT = `test-${randomUUID().slice(0, 8)}/wombat`;

let h: WebHarness;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
let admin: Page;
let capture: Capture;
let opsPort: number;
let deadPort: number;
let mapperQueue: string;
let deadQueue: string;
const uid: Record<string, number> = {};
const traced = randomUUID();
const letters = [randomUUID(), randomUUID(), randomUUID()];
/** The replacement's start: the held messages of the new device from then on are released. */
const REPLACE_FROM = "2025-03-01T00:00:00";

async function one<T>(text: string, params: unknown[] = []): Promise<T> {
  return (await h.api.sql<T>(text, params))[0]!;
}

async function physical(name: string, source: string, sourceIds: object): Promise<number> {
  const row = await one<{ uid: number }>(
    `insert into physical_devices (name, source_name, source_ids) values ($1, $2, $3) returning uid`,
    [name, source, JSON.stringify(sourceIds)],
  );
  return (uid[name] = row.uid);
}

async function logical(name: string): Promise<number> {
  const row = await one<{ uid: number }>(
    `insert into logical_devices (name, last_seen) values ($1, now()) returning uid`,
    [name],
  );
  return (uid[name] = row.uid);
}

/** A normalised message as the mapper stores it (held when `ld` is null). */
async function stored(
  pd: number,
  ld: number | null,
  ts: string,
  cid: string,
  holdReason: string | null = null,
) {
  const msg = {
    broker_correlation_id: cid,
    p_uid: pd,
    ...(ld !== null ? { l_uid: ld } : {}),
    timestamp: ts,
    timeseries: [{ name: "temperature", value: 21.5 }],
  };
  await h.api.sql(
    `insert into physical_timeseries (physical_uid, logical_uid, ts, json_msg, msg_key, hold_reason)
     values ($1, $2, $3, $4, $5, $6)`,
    [pd, ld, ts, JSON.stringify(msg), randomUUID(), holdReason],
  );
}

/** Connects a client of the test's own to the shared Mosquitto. */
function mqttClient(): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(MQTT_URL, { clientId: `web-ops-${randomUUID()}`, clean: true });
}

/** The retained script for a serial number, as any client of the broker sees it ("" = none). */
async function retained(serial: string): Promise<string> {
  const client = await mqttClient();
  try {
    let payload = "";
    client.on("message", (topic, body) => {
      if (topic === `${ROOT}/${serial}`) {
        payload = body.toString();
      }
    });
    await client.subscribeAsync(`${ROOT}/${serial}`, { qos: 1 });
    // Retained messages come before the answer to the next packet.
    await client.subscribeAsync(`${ROOT}-barrier/${randomUUID()}`, { qos: 0 });
    return payload;
  } finally {
    await client.endAsync();
  }
}

async function signIn(user: { username: string; password: string }): Promise<Page> {
  const page = await browser.context.newPage();
  page.on("pageerror", (err) => console.error("page error:", err.message));
  page.on("dialog", (d) => void d.accept());
  await page.goto(`${h.base}/login`);
  await page.fill("#username", user.username);
  await page.fill("#password", user.password);
  await page.click("#sign-in");
  await page.waitForSelector("#logical-devices");
  return page;
}

async function flashText(page: Page, expected: RegExp): Promise<void> {
  await page.locator("#flash", { hasText: expected }).waitFor();
}

async function show(page: Page, hash: string, selector: string): Promise<void> {
  await page.goto(`${h.base}/${hash}`);
  await page.waitForSelector(selector);
}

beforeAll(async () => {
  opsPort = await freePort();
  deadPort = await freePort();
  h = await startWeb(
    // The web process's ops port is one of the health page's targets (a separate process).
    { METRICS_PORT: String(opsPort) },
    {
      WEB_HEALTH_TARGETS: `http://127.0.0.1:${opsPort},http://127.0.0.1:${deadPort}`,
      WOMBAT_CONFIG_TOPIC: ROOT,
      MQTT_URL,
    },
  );
  browser = await launchBrowser({ timezoneId: "UTC" });
  const amqp = h.api.system.deps.config.amqp;
  capture = await captureExchange(amqp.url, amqp.ltsExchange);
  mapperQueue = amqp.queuePrefix + QUEUE_NAMES.mapper;
  deadQueue = `${mapperQueue}.dead`;

  await physical("wombat-1", "wombat", { serial_no: "SN-1", ccid: "8961", firmware: "1.2" });
  await physical("wombat-2", "wombat", { serial_no: "SN-2" });
  const sensor = await physical("sensor-old", "ttn", { app_id: "farm", dev_id: "old" });
  const spare = await physical("sensor-new", "ttn", { app_id: "farm", dev_id: "new" });
  const field = await logical("field-7");
  await h.api.sql(
    `insert into physical_logical_map (physical_uid, logical_uid, start_time) values ($1, $2, $3)`,
    [sensor, field, "2024-01-01T00:00:00Z"],
  );

  // One reading to trace: its raw body, the message stored and sent on, what writers did.
  await h.api.sql(
    `insert into raw_messages (source_name, physical_uid, correlation_id, ts, json_msg)
     values ('ttn', $1, $2, now(), $3)`,
    [sensor, traced, JSON.stringify({ uplink_message: { f_port: 2, frm_payload: "AQI=" } })],
  );
  await stored(sensor, field, new Date(Date.now() - 3_600_000).toISOString(), traced);
  await h.api.sql(
    `insert into delivery_queue (writer, msg_key, l_uid, p_uid, correlation_id, body, attempts,
       last_error, delivered_at)
     values ('ubidots', $1, $3, $4, $5, null, 1, null, now()),
            ('influxdb', $2, $3, $4, $5, '{}', 3, 'HTTP 503 from InfluxDB', null)`,
    [randomUUID(), randomUUID(), field, sensor, traced],
  );
  // Held messages of the spare sensor: two after the replacement's start, one before, one
  // stamped in the future (held for its timestamp, not released by default).
  await stored(spare, null, "2025-02-27T10:00:00Z", randomUUID(), "no_mapping");
  await stored(spare, null, "2025-03-02T10:00:00Z", randomUUID(), "no_mapping");
  await stored(spare, null, "2025-03-03T10:00:00Z", randomUUID(), "no_mapping");
  await stored(spare, null, "2099-01-01T00:00:00Z", randomUUID(), "future_timestamp");

  // Dead letters of the mapper's queue, one of them the traced reading's.
  await waitFor(
    async () => (await queueCount(deadQueue).catch(() => -1)) === 0,
    15_000,
    "topology",
  );
  const { conn, ch } = await openTestChannel();
  const confirm = await conn.createConfirmChannel();
  for (const [i, cid] of [...letters, traced].entries()) {
    confirm.publish(amqp.deadLetterExchange, mapperQueue, Buffer.from(JSON.stringify({ i })), {
      persistent: true,
      correlationId: cid,
      messageId: `m${i}`,
      timestamp: Math.floor(Date.now() / 1000),
      headers: {
        "x-broker-reason": i === 3 ? "invalid_message" : "unknown_device",
        "x-broker-error": `test letter ${i}`,
        "x-broker-queue": mapperQueue,
        "x-broker-component": "mapper",
      },
    });
  }
  await confirm.waitForConfirms();
  await ch.close();
  await conn.close();
  admin = await signIn(ADMIN);
}, 120_000);

afterAll(async () => {
  await capture?.close();
  await browser?.close();
  await h?.close();
  // Leave nothing retained on the shared broker.
  const client = await mqttClient().catch(() => undefined);
  for (const sn of ["SN-1", "SN-2", "SN-9"]) {
    await client?.publishAsync(`${ROOT}/${sn}`, "", { qos: 1, retain: true });
  }
  await client?.endAsync();
});

describe("web app operations pages", () => {
  it("shows pending Wombat scripts, sends and clears them over MQTT", async () => {
    // A script left pending earlier, and one for a serial number no device has.
    const client = await mqttClient();
    await client.publishAsync(`${ROOT}/SN-2`, WOMBAT_SCRIPTS.data, { qos: 1, retain: true });
    await client.publishAsync(`${ROOT}/SN-9`, WOMBAT_SCRIPTS.ota, { qos: 1, retain: true });
    await client.endAsync();

    // IoTa's address of the panel leads to it.
    await admin.goto(`${h.base}/wombats`);
    await admin.waitForSelector("#wombats tbody tr");
    expect(new URL(admin.url()).hash).toBe("#/wombats");
    const row = (name: string) => admin.locator(`#wombats tr[data-uid="${uid[name]}"]`);
    expect(await row("wombat-2").locator("td.pending pre").textContent()).toBe(WOMBAT_SCRIPTS.data);
    expect(await row("wombat-1").locator("td.pending").textContent()).toBe("");
    expect(await admin.locator('#other-scripts tr[data-serial="SN-9"]').count()).toBe(1);

    await row("wombat-1").locator("input[type=checkbox]").check();
    await admin.click("#wombat-logs");
    await flashText(admin, /Script pending for: SN-1/);
    expect(await retained("SN-1")).toBe(WOMBAT_SCRIPTS.logs);
    await row("wombat-1").locator("td.pending pre").waitFor();
    await admin.screenshot({ path: "test-results/web-wombats.png", fullPage: true });

    await admin.click(`#clear-${uid["wombat-2"]}`);
    await flashText(admin, /Cleared: SN-2/);
    expect(await retained("SN-2")).toBe("");
    await admin.locator('#other-scripts tr[data-serial="SN-9"] button').click();
    await flashText(admin, /Cleared: SN-9/);
    expect(await retained("SN-9")).toBe("");
    expect(await retained("SN-1")).toBe(WOMBAT_SCRIPTS.logs);
  });

  it("shows each process's readiness, queue depths, dead-letter counts and writer lag", async () => {
    await show(admin, "#/health", "#health-targets");
    const target = (port: number) =>
      admin.locator(`#health-targets tr[data-url="http://127.0.0.1:${port}"]`);
    expect(await target(opsPort).locator("td.state").textContent()).toBe("ready");
    expect(await target(opsPort).locator("td.components").textContent()).toBe("web");
    expect(await target(deadPort).locator("td.state").textContent()).toBe("unreachable");
    expect(
      await admin.locator(`#health-queues tr[data-queue="${deadQueue}"] td.messages`).textContent(),
    ).toBe("4");
    expect(
      await admin
        .locator(`#health-queues tr[data-queue="${mapperQueue}"] td.messages`)
        .textContent(),
    ).toBe("0");
    const influx = admin.locator('#health-writers tr[data-writer="influxdb"]');
    expect(await influx.locator("td.pending").textContent()).toBe("1");
    expect(await influx.locator("td.wrap").textContent()).toBe("HTTP 503 from InfluxDB");
    expect(
      await admin.locator('#health-writers tr[data-writer="ubidots"] td.pending').textContent(),
    ).toBe("0");
    await admin.screenshot({ path: "test-results/web-health.png", fullPage: true });
  });

  it("traces a reading from its raw body to each destination and dead letter", async () => {
    await show(admin, `#/trace/${traced}`, "#trace-raw pre");
    expect(await admin.locator("#trace-raw pre").textContent()).toContain("frm_payload");
    const message = admin.locator("#trace-messages-table tbody tr");
    expect(await message.count()).toBe(1);
    expect(await message.locator("td.reached a").getAttribute("href")).toBe(
      `#/logical-device/${uid["field-7"]}`,
    );
    const state = (writer: string) =>
      admin.locator(`#trace-deliveries tr[data-writer="${writer}"] td.state`).textContent();
    expect(await state("ubidots")).toBe("delivered");
    expect(await state("influxdb")).toBe("retrying");
    expect(
      await admin.locator("#trace-dead-letters-table tbody tr td:nth-child(2)").allTextContents(),
    ).toEqual(["invalid_message"]);
    await admin.screenshot({ path: "test-results/web-trace.png", fullPage: true });

    // From a point of the chart to the same page.
    await show(admin, `#/logical-device/${uid["field-7"]}`, "#draw-chart");
    await admin.click("#draw-chart");
    const over = admin.locator("#charts .chart .u-over");
    await over.waitFor();
    const box = (await over.boundingBox())!;
    await admin.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await admin.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await admin.waitForURL(`**/#/trace/${traced}`);
    await admin.waitForSelector("#trace-raw pre");
  });

  it("browses dead letters by reason, shows one, replays and purges", async () => {
    await show(admin, "#/dead-letters", `#dead-letter-queues tr[data-queue="${deadQueue}"]`);
    const summary = admin.locator(`#dead-letter-queues tr[data-queue="${deadQueue}"]`);
    expect(await summary.locator("td.messages").textContent()).toBe("4");
    await summary.locator("a.reason", { hasText: "unknown_device" }).click();
    await admin.waitForSelector("#letters tbody tr");
    expect(await admin.locator("#letters tbody tr").count()).toBe(3);
    await admin.click("#show-1");
    expect(await admin.locator("#letter-detail pre").textContent()).toBe('{"i":0}');
    await admin.screenshot({ path: "test-results/web-dead-letters.png", fullPage: true });

    // Replay the first: it goes back to the mapper's queue (no mapper runs here to take it).
    await admin.locator('#letters tr[data-position="1"] input[type=checkbox]').check();
    await admin.click("#replay-selected");
    await flashText(admin, /Replayed 1 of 1 selected/);
    expect(await queueCount(mapperQueue)).toBe(1);
    expect(await queueCount(deadQueue)).toBe(3);

    // Purge the other two of that reason; the invalid_message one stays.
    await admin.waitForSelector("#purge-reason");
    await admin.click("#purge-reason");
    await flashText(admin, /Purged 2 unknown_device/);
    expect(await queueCount(deadQueue)).toBe(1);
  });

  it("lists registry events newest first and filters them", async () => {
    const token = h.api.adminToken;
    for (const name of ["event-a", "event-b"]) {
      const res = await h.api.call("POST", "/logical/devices/", { token, body: { name } });
      expect(res.status).toBe(201);
    }
    const created = await one<{ uid: number }>(
      "select uid from logical_devices where name = 'event-b'",
    );
    const patched = await h.api.call("PATCH", `/logical/devices/${created.uid}`, {
      token,
      body: { name: "event-b2" },
    });
    expect(patched.status).toBe(200);
    await show(admin, "#/events", "#events tbody tr.event");
    const ids = await admin
      .locator("#events tbody tr.event")
      .evaluateAll((rows) => rows.map((r) => Number(r.getAttribute("data-id"))));
    const all = await h.api.sql<{ id: string }>(
      "select id from registry_events order by id desc limit 100",
    );
    expect(ids).toEqual(all.map((r) => Number(r.id)));

    await admin.selectOption("#event-entity", "logical_device");
    await admin.fill("#event-entity-id", String(created.uid));
    await admin.click("#event-search");
    const filtered = await h.api.sql<{ operation: string }>(
      `select operation from registry_events
       where entity = 'logical_device' and entity_id = $1 order by id desc`,
      [String(created.uid)],
    );
    expect(filtered.map((r) => r.operation)).toEqual(["update", "create"]);
    const operations = () =>
      admin.locator("#events tbody tr.event td:nth-child(4)").allTextContents();
    await waitFor(async () => (await operations()).length === 2, 15_000, "filtered events");
    expect(await operations()).toEqual(["update", "create"]);
    await admin.screenshot({ path: "test-results/web-events.png", fullPage: true });
  });

  it("replaces a sensor: the old mapping ends, the new one starts, held messages are released", async () => {
    await show(admin, `#/replace/${uid["field-7"]}`, "#replace-pd");
    await admin.selectOption("#replace-pd", String(uid["sensor-new"]));
    await admin.fill("#replace-from", REPLACE_FROM);
    await admin.click("#replace-next");
    await admin.waitForSelector("#replace-held-count");
    expect(await admin.locator("#replace-held-count").textContent()).toBe("2");
    expect(await admin.locator("#replace-held").textContent()).toContain("1 more held");
    await admin.screenshot({ path: "test-results/web-replace.png", fullPage: true });
    await admin.click("#replace-confirm");
    await flashText(admin, /Sensor replaced; 2 held message\(s\) released/);

    const mappings = await h.api.sql<{ physical_uid: number; start: string; end: string | null }>(
      `select physical_uid, to_char(start_time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') as start,
              to_char(end_time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') as end
       from physical_logical_map where logical_uid = $1 order by start_time`,
      [uid["field-7"]],
    );
    expect(mappings).toEqual([
      { physical_uid: uid["sensor-old"], start: "2024-01-01T00:00:00", end: REPLACE_FROM },
      { physical_uid: uid["sensor-new"], start: REPLACE_FROM, end: null },
    ]);
    const held = await h.api.sql<{ ts: string; logical_uid: number | null }>(
      `select to_char(ts at time zone 'UTC', 'YYYY-MM-DD') as ts, logical_uid
       from physical_timeseries where physical_uid = $1 order by ts`,
      [uid["sensor-new"]],
    );
    expect(held).toEqual([
      { ts: "2025-02-27", logical_uid: null },
      { ts: "2025-03-02", logical_uid: uid["field-7"] },
      { ts: "2025-03-03", logical_uid: uid["field-7"] },
      { ts: "2099-01-01", logical_uid: null },
    ]);
    await waitFor(() => capture.messages.length === 2, 15_000, "released messages");
    expect(capture.messages.map((m) => m.body.l_uid)).toEqual([uid["field-7"], uid["field-7"]]);
  });

  it("shows a read-only user no controls and refuses their changes", async () => {
    const reader = await signIn(READER);
    await show(reader, "#/wombats", "#wombats tbody tr");
    expect(await reader.locator("#wombat-ota, #wombat-logs, #wombat-clear").count()).toBe(0);
    const refused = await reader.evaluate(async () => {
      const session = (await (await fetch("/iota/session")).json()) as { csrf: string };
      const res = await fetch("/iota/api/wombats/config", {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrf-token": session.csrf },
        body: JSON.stringify({ action: "ota", uids: [1] }),
      });
      return res.status;
    });
    expect(refused).toBe(403);
    await show(reader, "#/replace", "h1");
    await reader.locator("p.error", { hasText: "Read-only users cannot" }).waitFor();
    await show(reader, `#/dead-letters/${encodeURIComponent(deadQueue)}`, "#letters");
    expect(await reader.locator("#replay-selected").count()).toBe(0);
    await reader.close();
  });

  it("fits a phone-width screen", async () => {
    const phone = await launchBrowser({ viewport: { width: 390, height: 844 } });
    try {
      const page = await phone.context.newPage();
      await page.goto(`${h.base}/login`);
      await page.fill("#username", ADMIN.username);
      await page.fill("#password", ADMIN.password);
      await page.click("#sign-in");
      await page.waitForSelector("#logical-devices");
      for (const [hash, ready, file] of [
        ["#/wombats", "#wombats", "web-phone-wombats"],
        ["#/health", "#health-targets", "web-phone-health"],
        ["#/dead-letters", "#dead-letter-queues", ""],
        ["#/events", "#events tbody tr", ""],
        [`#/trace/${traced}`, "#trace-raw pre", "web-phone-trace"],
        [`#/replace/${uid["field-7"]}`, "#replace-next", ""],
      ] as const) {
        await page.goto(`${h.base}/${hash}`);
        await page.waitForSelector(ready);
        const overflow = await page.evaluate<number>(
          "document.documentElement.scrollWidth - window.innerWidth",
        );
        expect(overflow, hash).toBeLessThanOrEqual(0);
        if (file) {
          await page.screenshot({ path: `test-results/${file}.png`, fullPage: true });
        }
      }
    } finally {
      await phone.close();
    }
  });
});
