import { readFile } from "node:fs/promises";

import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ADMIN } from "../helpers/api.js";
import { launchBrowser, startWeb, type WebHarness } from "../helpers/browser.js";

/**
 * The operator's pages in a real browser: mapping through the UI, pause and resume, notes, the
 * CSV export against the stored messages, the map's markers, a chart, and a phone-width screen.
 */

let h: WebHarness;
let browser: Awaited<ReturnType<typeof launchBrowser>>;
const uid: Record<string, number> = {};

async function one<T>(text: string, params: unknown[] = []): Promise<T> {
  return (await h.api.sql<T>(text, params))[0]!;
}

async function physical(name: string, sourceIds: object, location?: [number, number]) {
  const row = await one<{ uid: number }>(
    `insert into physical_devices (name, source_name, source_ids, location)
     values ($1, 'ttn', $2, case when $3::float8 is null then null
       else ST_SetSRID(ST_MakePoint($4::float8, $3::float8), 4283) end) returning uid`,
    [name, JSON.stringify(sourceIds), location?.[0] ?? null, location?.[1] ?? null],
  );
  uid[name] = row.uid;
}

async function logical(name: string, lastSeenHoursAgo: number | null, location: [number, number]) {
  const row = await one<{ uid: number }>(
    `insert into logical_devices (name, location, last_seen)
     values ($1, ST_SetSRID(ST_MakePoint($3, $2), 4283),
       case when $4::float8 is null then null else now() - make_interval(hours => $4::int) end)
     returning uid`,
    [name, location[0], location[1], lastSeenHoursAgo],
  );
  uid[name] = row.uid;
}

async function message(pd: string, ld: string, ts: string, values: Record<string, unknown>) {
  const msg = {
    broker_correlation_id: "6a0d2f0e-5b9e-4a1c-8a55-000000000000",
    p_uid: uid[pd],
    l_uid: uid[ld],
    timestamp: ts,
    timeseries: Object.entries(values).map(([name, value]) => ({ name, value })),
  };
  await h.api.sql(
    `insert into physical_timeseries (physical_uid, logical_uid, ts, json_msg)
     values ($1, $2, $3, $4)`,
    [uid[pd], uid[ld], ts, JSON.stringify(msg)],
  );
}

beforeAll(async () => {
  h = await startWeb();
  // Sydney (UTC+11 in January): the export's dates and ts_local are the browser's.
  browser = await launchBrowser({ timezoneId: "Australia/Sydney" });
  await physical("sensor-a", { app_id: "farm", dev_id: "a-1" }, [-33.1, 147.2]);
  await physical("sensor-b", { app_id: "farm", dev_id: "b-2" });
  await physical("sensor-c", { app_id: "farm", dev_id: "c-3" });
  await logical("live-ld", 1, [-32.0, 147.0]);
  await logical("late-ld", 8, [-32.5, 147.5]);
  await logical("missing-ld", 48, [-33.0, 148.0]);
  await logical("never-ld", null, [-33.5, 148.5]);
  await logical("export-ld", 2, [-34.0, 149.0]);
  for (const [ts, temp, extra] of [
    ["2025-01-14T12:30:00Z", 1, {}], // 23:30 on the 14th in Sydney: outside
    ["2025-01-15T01:00:00Z", 20.5, { battery: 3.6 }],
    ["2025-01-14T13:00:00.250Z", 19, {}],
    ["2025-01-15T12:59:59Z", 22, { note: "=cmd" }],
    ["2025-01-15T13:00:01Z", 2, {}], // the 16th in Sydney: outside
  ] as const) {
    await message("sensor-c", "export-ld", ts, { temperature: temp, ...extra });
  }
  const now = Date.now();
  for (let i = 1; i <= 5; i++) {
    const ts = new Date(now - i * 3_600_000).toISOString();
    await message("sensor-c", "live-ld", ts, { temperature: 10 + i, humidity: 50 - i });
  }
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
});

async function signedIn(context = browser.context): Promise<Page> {
  const page = await context.newPage();
  page.on("pageerror", (err) => console.error("page error:", err.message));
  page.on("dialog", (d) => void d.accept());
  await page.goto(`${h.base}/login`);
  await page.fill("#username", ADMIN.username);
  await page.fill("#password", ADMIN.password);
  await page.click("#sign-in");
  await page.waitForSelector("#logical-devices");
  return page;
}

async function flashText(page: Page, expected: RegExp): Promise<void> {
  await page.locator("#flash", { hasText: expected }).waitFor();
}

const currentMappings = () =>
  h.api.sql<{ physical_uid: number; logical_uid: number; name: string; is_active: boolean }>(
    `select m.physical_uid, m.logical_uid, l.name, m.is_active
     from physical_logical_map m join logical_devices l on l.uid = m.logical_uid
     where m.end_time is null order by m.physical_uid`,
  );

describe("web app devices", () => {
  it("maps selected physical devices to new logical devices from the list", async () => {
    const page = await signedIn();
    await page.goto(`${h.base}/#/physical-devices`);
    await page.waitForSelector("#physical-devices tbody tr");
    await page.screenshot({ path: "test-results/web-physical-devices.png", fullPage: true });
    await page.check(`tr[data-uid="${uid["sensor-a"]}"] input[type=checkbox]`);
    await page.check(`tr[data-uid="${uid["sensor-b"]}"] input[type=checkbox]`);
    await page.click("#create-mappings");
    await flashText(page, /^Mapped 2 device/);
    expect(await currentMappings()).toEqual([
      {
        physical_uid: uid["sensor-a"],
        logical_uid: expect.any(Number),
        name: "sensor-a",
        is_active: true,
      },
      {
        physical_uid: uid["sensor-b"],
        logical_uid: expect.any(Number),
        name: "sensor-b",
        is_active: true,
      },
    ]);
    // The new logical device took the physical device's location.
    const ld = await one<{ lat: number }>(
      `select ST_Y(l.location) as lat from logical_devices l where name = 'sensor-a'`,
    );
    expect(ld.lat).toBeCloseTo(-33.1, 5);
    await page.close();
  });

  it("pauses, resumes, ends and remaps a mapping, and keeps notes, on the device page", async () => {
    const page = await signedIn();
    const pd = uid["sensor-a"]!;
    await page.goto(`${h.base}/#/physical-device/${pd}`);
    await page.waitForSelector("#pause-mapping");
    expect(await page.getAttribute("#ttn-link", "href")).toBe(
      "https://au1.cloud.thethings.network/console/applications/farm/devices/a-1",
    );
    await page.click("#pause-mapping");
    await page.waitForSelector("#resume-mapping");
    expect((await currentMappings())[0]!.is_active).toBe(false);
    await page.click("#resume-mapping");
    await page.waitForSelector("#pause-mapping");
    expect((await currentMappings())[0]!.is_active).toBe(true);

    await page.fill("#new-note", "battery replaced");
    await page.click("#add-note");
    await page.waitForSelector("#notes li");
    const note = await one<{ uid: number; note: string }>("select uid, note from device_notes");
    expect(note.note).toBe("battery replaced");
    await page.click(`#edit-note-${note.uid}`);
    await page.fill(`li[data-note="${note.uid}"] textarea`, "battery replaced twice");
    await page.click(`#save-note-${note.uid}`);
    await flashText(page, /Note saved/);
    expect((await one<{ note: string }>("select note from device_notes")).note).toBe(
      "battery replaced twice",
    );
    await page.fill("#device-name", "sensor-a renamed");
    await page.fill("#device-location", "-33.2, 147.3");
    await page.click("#save-device");
    await flashText(page, /Saved/);
    expect(
      await one("select name, ST_Y(location) as lat from physical_devices where uid = $1", [pd]),
    ).toEqual({ name: "sensor-a renamed", lat: -33.2 });
    await page.screenshot({ path: "test-results/web-physical-device.png", fullPage: true });

    await page.click(`#delete-note-${note.uid}`);
    await flashText(page, /Note deleted/);
    expect(await h.api.sql("select * from device_notes")).toEqual([]);

    await page.click("#end-mapping");
    await flashText(page, /Mapping ended/);
    expect((await currentMappings()).map((m) => m.physical_uid)).toEqual([uid["sensor-b"]]);

    // Map it to an existing logical device; the history shows both mappings.
    await page.selectOption("#map-target", String(uid["never-ld"]));
    await page.click("#create-mapping");
    await flashText(page, /Mapped/);
    expect((await currentMappings()).find((m) => m.physical_uid === pd)?.logical_uid).toBe(
      uid["never-ld"],
    );
    expect(await page.locator("#mapping-history tbody tr").count()).toBe(2);

    // From a logical device's page, taking a physical device that is mapped elsewhere moves it.
    await page.goto(`${h.base}/#/logical-device/${uid["late-ld"]}`);
    await page.waitForSelector("#map-target");
    await page.selectOption("#map-target", String(pd));
    await page.click("#create-mapping");
    await flashText(page, /Mapped/);
    expect((await currentMappings()).find((m) => m.physical_uid === pd)?.logical_uid).toBe(
      uid["late-ld"],
    );
    await page.close();
  });

  it("exports a logical device's messages as IoTa's web CSV for dates in the browser's zone", async () => {
    const page = await signedIn();
    await page.goto(`${h.base}/#/logical-device/${uid["export-ld"]}`);
    await page.waitForSelector("#export-csv");
    await page.fill("#export-from", "2025-01-15");
    await page.fill("#export-to", "2025-01-15");
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("#export-csv"),
    ]);
    expect(download.suggestedFilename()).toBe("export-ld.csv");
    const csv = await readFile((await download.path())!, "utf8");
    const api = (await (
      await h.api.call("GET", `/messages?l_uid=${uid["export-ld"]}&include_received_at=true`, {
        token: h.api.adminToken,
      })
    ).json()) as { timestamp: string; received_at_utc: string }[];
    const receivedAt = (ts: string) => api.find((m) => m.timestamp === ts)!.received_at_utc;
    const l = uid["export-ld"];
    expect(csv).toBe(
      [
        "l_uid,ts,received_at,temperature,battery,note,ts_local",
        `${l},2025-01-14T13:00:00.250Z,${receivedAt("2025-01-14T13:00:00.250Z")},19,,,2025-01-15 00:00:00+11:00`,
        `${l},2025-01-15T01:00:00Z,${receivedAt("2025-01-15T01:00:00Z")},20.5,3.6,,2025-01-15 12:00:00+11:00`,
        `${l},2025-01-15T12:59:59Z,${receivedAt("2025-01-15T12:59:59Z")},22,,'=cmd,2025-01-15 23:59:59+11:00`,
        "",
      ].join("\r\n"),
    );
    await page.fill("#export-from", "2024-01-01");
    await page.fill("#export-to", "2024-01-02");
    await page.click("#export-csv");
    await flashText(page, /No messages found in selected date range/);
    await page.close();
  });

  it("shows logical devices on the map in their last-seen colours, without tiles", async () => {
    const page = await signedIn();
    await page.goto(`${h.base}/#/map`);
    await page.waitForSelector("path.marker");
    const markers = await page.$$eval("path.marker", (paths) =>
      paths.map((p) => ({ cls: p.getAttribute("class"), fill: p.getAttribute("fill") })),
    );
    const colourOf = (name: string) =>
      markers.find((m) => m.cls!.split(" ").includes(`marker-uid-${uid[name]}`))?.fill;
    expect(colourOf("live-ld")).toBe("#2e7d32");
    expect(colourOf("late-ld")).toBe("#ef6c00");
    expect(colourOf("missing-ld")).toBe("#c62828");
    expect(colourOf("never-ld")).toBe("#616161");
    expect(markers.filter((m) => m.cls!.includes("marker-live"))).toHaveLength(2); // + export-ld
    // One layer per class, all listed in the layer control.
    expect(await page.locator(".leaflet-control-layers-overlays label").allTextContents()).toEqual([
      " Live",
      " Late",
      " Missing",
      " Never seen",
    ]);
    await page.screenshot({ path: "test-results/web-map.png" });
    await page.close();
  });

  it("draws a chart of each numeric variable", async () => {
    const page = await signedIn();
    await page.goto(`${h.base}/#/logical-device/${uid["live-ld"]}`);
    await page.waitForSelector("#draw-chart");
    await page.click("#draw-chart");
    await page.waitForSelector("#charts .chart canvas");
    expect(
      await page.$$eval("#charts .chart", (els) => els.map((e) => e.getAttribute("data-variable"))),
    ).toEqual(["temperature", "humidity"]);
    await page.screenshot({ path: "test-results/web-logical-device.png", fullPage: true });
    await page.close();
  });

  it("fits a phone-width screen", async () => {
    const phone = await launchBrowser({ viewport: { width: 390, height: 844 } });
    try {
      const page = await signedIn(phone.context);
      for (const [hash, file] of [
        ["#/logical-devices", "web-phone-logical-devices"],
        [`#/physical-device/${uid["sensor-a"]}`, "web-phone-physical-device"],
      ] as const) {
        await page.goto(`${h.base}/${hash}`);
        await page.waitForSelector("h1:not(:empty)");
        await page.waitForSelector(".loading", { state: "detached" });
        const overflow = await page.evaluate<number>(
          "document.documentElement.scrollWidth - window.innerWidth",
        );
        expect(overflow).toBeLessThanOrEqual(0);
        await page.screenshot({ path: `test-results/${file}.png`, fullPage: true });
      }
    } finally {
      await phone.close();
    }
  });
});
