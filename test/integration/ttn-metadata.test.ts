import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { RunningSystem } from "../../src/app/root.js";
import { deadLetterQueueName, QUEUE_NAMES } from "../../src/bus/topology.js";
import { TTN_DEAD_LETTER_QUEUE } from "../../src/sources/ttn/webhook.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, fixtures), "utf8");
const netvox = JSON.parse(fixture("ttn_uplink_temphumid-netvox-r718a_2022-12-16.json")) as {
  end_device_ids: Record<string, unknown>;
  uplink_message: Record<string, unknown>;
};
const apiRecord = JSON.parse(
  fixture("ttn_api_device_details_temphumid-netvox-r718a.json"),
) as Record<string, unknown>;

/** What the stand-in API does with the next request for a device. */
type Step = "500" | "timeout" | "429" | "404" | "ok" | "hold";

/**
 * A stand-in for The Things Stack API: per device id, a script of answers (the last one
 * repeats), the recorded requests, and requests held open until released.
 */
class StandInApi {
  readonly requests: { url: string; authorization: string | undefined }[] = [];
  readonly scripts = new Map<string, Step[]>();
  readonly records = new Map<string, Record<string, unknown>>();
  readonly held: ServerResponse[] = [];
  server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.#answer(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api/v3`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  requestsFor(devId: string): number {
    return this.requests.filter((r) => r.url.includes(`/devices/${devId}?`)).length;
  }

  #answer(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({ url: req.url ?? "", authorization: req.headers.authorization });
    const devId = /\/devices\/([^/?]+)/.exec(req.url ?? "")?.[1] ?? "";
    const script = this.scripts.get(devId) ?? ["ok"];
    const step = script.length > 1 ? script.shift()! : script[0]!;
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
      res
        .writeHead(status, { "content-type": "application/json", ...headers })
        .end(JSON.stringify(body));
    switch (step) {
      case "ok":
        json(200, this.records.get(devId) ?? apiRecord);
        return;
      case "500":
        json(500, { code: 13, message: "internal" });
        return;
      case "429":
        json(429, { code: 8, message: "rate limited" }, { "retry-after": "1" });
        return;
      case "404":
        json(404, { code: 5, message: `device ${devId} not found` });
        return;
      case "timeout":
        setTimeout(() => json(200, apiRecord), 3_000).unref();
        return;
      case "hold":
        this.held.push(res);
        return;
    }
  }
}

const amqpConfig = isolatedAmqpConfig();
const api = new StandInApi();
let db: TestDatabase;
let system: RunningSystem;
let base: string;

function uplink(devId: string, devEui: string, fCnt = 1) {
  return {
    ...netvox,
    end_device_ids: { ...netvox.end_device_ids, device_id: devId, dev_eui: devEui },
    uplink_message: { ...netvox.uplink_message, f_cnt: fCnt },
  };
}

async function post(body: unknown): Promise<Response> {
  return fetch(`${base}/ttn/webhook/up`, { method: "POST", body: JSON.stringify(body) });
}

interface DeviceRow {
  name: string;
  lat: number | null;
  long: number | null;
  properties: Record<string, unknown>;
}

async function device(devId: string): Promise<DeviceRow | undefined> {
  const { rows } = await db.handle.pool.query<DeviceRow>(
    `select name, ST_Y(location) as lat, ST_X(location) as long, properties
     from physical_devices where source_ids->>'dev_id' = $1`,
    [devId],
  );
  return rows[0];
}

const fetched = async (devId: string): Promise<boolean> =>
  (await device(devId))?.properties.ttn_metadata_pending === undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  const url = await api.start();
  system = await startTestSystem(
    ["ttn-webhook"],
    testConfig(db, amqpConfig, {
      TTN_API_TOKEN: "NNSXS.TEST-TOKEN",
      TTN_API_URL: url,
      TTN_API_TIMEOUT_MS: "1000",
      TTN_API_RETRY_INITIAL_MS: "50",
      TTN_API_RETRY_MAX_MS: "200",
      TTN_API_RATE_PER_SECOND: "100",
    }),
  );
  base = `http://127.0.0.1:${system.components[0]!.port!()}`;
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, "ready");
});

afterAll(async () => {
  await system?.stop();
  await api.stop();
  const mapperQueue = amqpConfig.queuePrefix + QUEUE_NAMES.mapper;
  await cleanupAmqp(amqpConfig, [
    mapperQueue,
    deadLetterQueueName(mapperQueue),
    amqpConfig.queuePrefix + TTN_DEAD_LETTER_QUEUE,
  ]);
  await db?.drop();
});

describe("device metadata from The Things Stack API, in the background", () => {
  it("answers the uplink without waiting for the API, then stores name and record", async () => {
    api.scripts.set("dev-held", ["hold", "ok"]);
    expect((await post(uplink("dev-held", "00000000000000e1"))).status).toBe(204);
    // Answered while the device is still a placeholder and its API request not even answered.
    const pending = await device("dev-held");
    expect(pending!.name).toBe("dev-held");
    expect(pending!.properties.ttn_metadata_pending).toMatchObject({ name: "dev-held" });
    await waitFor(() => api.held.length === 1, 10_000, "the held API request");
    api.held.shift()!.writeHead(500).end("{}");
    await waitFor(() => fetched("dev-held"), 10_000, "metadata of dev-held");
    const done = await device("dev-held");
    expect(done!.name).toBe("GN2");
    expect(done!.properties.ttn).toEqual(apiRecord);
    expect(done!.properties.last_msg).toBeDefined();
  });

  it("asks as IoTa does, with the token as a Bearer credential", () => {
    const request = api.requests.find((r) => r.url.includes("dev-held"))!;
    expect(request.url).toBe(
      "/api/v3/applications/temphumid-netvox-r718a/devices/dev-held?field_mask=name,description,locations,attributes",
    );
    expect(request.authorization).toBe("Bearer NNSXS.TEST-TOKEN");
  });

  it("retries through 500, a timeout and a 429, then succeeds", async () => {
    api.scripts.set("dev-faults", ["500", "timeout", "429", "ok"]);
    api.records.set("dev-faults", {
      ...apiRecord,
      name: "Paddock 7",
      locations: { user: { latitude: -33.5, longitude: 148.25, source: "SOURCE_REGISTRY" } },
    });
    expect((await post(uplink("dev-faults", "00000000000000e2"))).status).toBe(204);
    await waitFor(() => fetched("dev-faults"), 20_000, "metadata of dev-faults");
    const done = await device("dev-faults");
    expect(done).toMatchObject({ name: "Paddock 7", lat: -33.5, long: 148.25 });
    expect(api.requestsFor("dev-faults")).toBe(4);
  });

  it("keeps a name and location an operator set before the fetch succeeded", async () => {
    api.scripts.set("dev-renamed", ["hold", "ok"]);
    api.records.set("dev-renamed", {
      ...apiRecord,
      name: "From TTN",
      locations: { user: { latitude: -30, longitude: 150 } },
    });
    expect((await post(uplink("dev-renamed", "00000000000000e3"))).status).toBe(204);
    await waitFor(() => api.held.length === 1, 10_000, "the held API request");
    await db.handle.pool.query(
      `update physical_devices set name = 'Operator name',
         location = ST_SetSRID(ST_MakePoint(151, -31), 4283)
       where source_ids->>'dev_id' = 'dev-renamed'`,
    );
    api.held.shift()!.writeHead(503).end("{}");
    await waitFor(() => fetched("dev-renamed"), 20_000, "metadata of dev-renamed");
    const done = await device("dev-renamed");
    expect(done).toMatchObject({ name: "Operator name", lat: -31, long: 151 });
    expect((done!.properties.ttn as { name: string }).name).toBe("From TTN");
  });

  it("keeps the API's answer for an unknown device, as IoTa does, and stops asking", async () => {
    api.scripts.set("dev-unknown", ["404"]);
    expect((await post(uplink("dev-unknown", "00000000000000e4"))).status).toBe(204);
    await waitFor(() => fetched("dev-unknown"), 10_000, "metadata of dev-unknown");
    const done = await device("dev-unknown");
    expect(done!.name).toBe("dev-unknown");
    expect(done!.properties.ttn).toEqual({ code: 5, message: "device dev-unknown not found" });
    const asked = api.requestsFor("dev-unknown");
    expect((await post(uplink("dev-unknown", "00000000000000e4", 2))).status).toBe(204);
    expect(api.requestsFor("dev-unknown")).toBe(asked);
  });
});
