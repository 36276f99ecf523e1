import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Db } from "../../src/db/database.js";
import { latestEventId } from "../../src/db/repositories/events.js";
import { createLogicalDevice } from "../../src/db/repositories/logical-devices.js";
import { cliActor } from "../../src/events/actor.js";
import type { RegistryEvent } from "../../src/events/event.js";
import { waitFor } from "../helpers/bus.js";
import { ROOT, runBroker } from "../helpers/cli.js";
import { startApi, type ApiHarness } from "../helpers/api.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { PG } from "../helpers/env.js";

// Each CLI run starts Node and compiles TypeScript; a busy machine needs room.
const CLI_TIMEOUT = 120_000;

let testDb: TestDatabase;
let db: Db;
let api: ApiHarness;

beforeAll(async () => {
  testDb = await createTestDatabase();
  db = testDb.handle.db;
  for (const name of ["read-1", "read-2", "read-3"]) {
    await createLogicalDevice(db, { name });
  }
  // Its admin and reader users are created after the three devices, so their events come later.
  api = await startApi({ database: testDb });
});

afterAll(async () => {
  await api?.close();
  await testDb?.drop();
});

async function get(
  query: string,
  token = api.adminToken,
): Promise<{ status: number; body: unknown }> {
  const res = await api.call("GET", `/events${query}`, { token });
  return { status: res.status, body: await res.json() };
}

describe("GET /broker/api/events", () => {
  it("pages through the log oldest first, filtered by entity and operation", async () => {
    const all = await get("?entity=logical_device");
    expect(all.status).toBe(200);
    const events = all.body as RegistryEvent[];
    expect(events.map((e) => e.data.after?.name)).toEqual(["read-1", "read-2", "read-3"]);

    const page = await get(
      `?since=${events[0]!.id}&limit=1&entity=logical_device&operation=create`,
    );
    expect(page.body).toEqual([events[1]]);
    expect((await get("?entity=mapping")).body).toEqual([]);
  });

  it("answers 422 naming the parameter for a bad one", async () => {
    for (const [query, name] of [
      ["?limit=0", "limit"],
      ["?limit=5000", "limit"],
      ["?since=abc", "since"],
      ["?since=0x10", "since"],
      ["?since=1e3", "since"],
      ["?since=", "since"],
      ["?limit=2.5", "limit"],
      ["?entity=thing", "entity"],
    ] as const) {
      const res = await get(query);
      expect(res.status, query).toBe(422);
      expect(JSON.stringify(res.body), query).toContain(name);
    }
  });

  it("shows user events to admins only", async () => {
    const admin = (await get("?entity=user")).body as RegistryEvent[];
    expect(admin.map((e) => e.data.after?.username)).toEqual(["admin", "reader"]);
    expect(JSON.stringify(admin)).not.toMatch(/password|salt|auth_token"\s*:/);
    expect((await get("?entity=user", api.readerToken)).status).toBe(403);
    const reader = (await get("", api.readerToken)).body as RegistryEvent[];
    expect(reader.some((e) => e.entity === "user")).toBe(false);
    expect(reader.length).toBeGreaterThanOrEqual(3);
    expect((await api.call("GET", "/events")).status).toBe(401);
  });
});

describe("broker events", { timeout: CLI_TIMEOUT }, () => {
  it("ls lists events as JSON; CLI changes carry the actor cli:<user>", async () => {
    const created = await runBroker(["ld", "create", "--json", '{"name": "from the cli"}'], {
      database: testDb.name,
    });
    expect(created.code).toBe(0);
    const run = await runBroker(["events", "ls", "--since", "2", "--entity", "logical_device"], {
      database: testDb.name,
    });
    expect(run.stderr).toBe("");
    const events = JSON.parse(run.stdout) as RegistryEvent[];
    expect(events.map((e) => [e.data.after?.name, e.actor])).toEqual([
      ["read-3", "database"],
      ["from the cli", cliActor()],
    ]);

    const bad = await runBroker(["events", "ls", "--limit", "0"], { database: testDb.name });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(/limit/);
  });

  it("tail prints each new event as one JSON line until interrupted", async () => {
    const since = await latestEventId(db);
    // tsx as a loader inside one node process: the tsx command runs a child of its own and,
    // on a busy machine, SIGKILLs it when the child is slow to acknowledge a relayed SIGINT.
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "events", "tail", "--since", String(since)],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          PGHOST: PG.host,
          PGPORT: String(PG.port),
          PGUSER: PG.user,
          PGPASSWORD: PG.password,
          PGDATABASE: testDb.name,
        },
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await createLogicalDevice(db, { name: "tailed-1" });
      await createLogicalDevice(db, { name: "tailed-2" });
      await waitFor(() => stdout.split("\n").length > 2, 60_000, "two lines from tail");
    } finally {
      child.kill("SIGINT");
    }
    expect(await exited, stderr).toBe(0);
    const lines = stdout.trimEnd().split("\n");
    expect(lines.map((l) => (JSON.parse(l) as RegistryEvent).data.after?.name)).toEqual([
      "tailed-1",
      "tailed-2",
    ]);
  });
});
