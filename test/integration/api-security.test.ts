import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { addUser } from "../../src/api/credentials.js";
import { runBroker } from "../helpers/cli.js";
import { basic, startApi, type ApiHarness } from "../helpers/api.js";

/**
 * The REST API's defences, each against the real server: login limits under truly concurrent
 * guesses, malformed requests, Location headers, token revocation, CSV cells, framing, and
 * error bodies that never echo what the client sent.
 */

const MAX_PER_ADDRESS = 3;
const MAX_PER_USER = 6;

let api: ApiHarness;
const logLines: string[] = [];

beforeAll(async () => {
  api = await startApi({
    logLines,
    env: {
      LOGIN_MAX_FAILURES: String(MAX_PER_ADDRESS),
      LOGIN_MAX_FAILURES_PER_USER: String(MAX_PER_USER),
      API_TRUST_PROXY: "loopback",
    },
  });
});

afterAll(async () => {
  await api?.close();
});

function login(username: string, password: string, client: string): Promise<Response> {
  return api.call("GET", "/token", {
    headers: { ...basic(username, password), "x-forwarded-for": client },
  });
}

/** How many of each status. */
function tally(statuses: number[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const s of statuses) {
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
}

describe("GET /token limits", () => {
  it("checks no more than the limit of simultaneous guesses from one address", async () => {
    await addUser(api.db.handle.db, { username: "victim1", password: "right" });
    const guesses = Array.from({ length: 64 }, () => login("victim1", "wrong", "10.20.0.1"));
    const statuses = (await Promise.all(guesses)).map((r) => r.status);
    expect(tally(statuses)).toEqual({ 401: MAX_PER_ADDRESS, 429: 64 - MAX_PER_ADDRESS });
    const locked = await login("victim1", "right", "10.20.0.1");
    expect(locked.status).toBe(429);
    expect(await locked.json()).toEqual({ detail: "Too many failed login attempts; retry later" });
    const retryAfter = Number(locked.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
  });

  it("lets 63 wrong passwords and the right one at once check only the limit", async () => {
    await addUser(api.db.handle.db, { username: "victim2", password: "right" });
    const burst = Array.from({ length: 64 }, (_, i) =>
      login("victim2", i === 40 ? "right" : "wrong", "10.21.0.1"),
    );
    const counts = tally((await Promise.all(burst)).map((r) => r.status));
    expect((counts[401] ?? 0) + (counts[200] ?? 0)).toBe(MAX_PER_ADDRESS);
    expect(counts[429]).toBe(64 - MAX_PER_ADDRESS);
  });

  it("bounds guesses from many addresses without locking the user out of their usual one", async () => {
    await addUser(api.db.handle.db, { username: "victim3", password: "right" });
    expect((await login("victim3", "right", "10.22.0.1")).status).toBe(200);
    const spread = Array.from({ length: 64 }, (_, i) =>
      login("victim3", "wrong", `10.22.1.${i + 1}`),
    );
    const counts = tally((await Promise.all(spread)).map((r) => r.status));
    expect(counts).toEqual({ 401: MAX_PER_USER, 429: 64 - MAX_PER_USER });
    // The right password from a new address waits too; from the usual address it works.
    expect((await login("victim3", "right", "10.22.2.1")).status).toBe(429);
    expect((await login("victim3", "right", "10.22.0.1")).status).toBe(200);
    // Ten failures from elsewhere no longer lock anyone out of their own address.
    for (let i = 0; i < 10; i++) {
      await login("victim3", "wrong", `10.22.3.${i}`);
    }
    expect((await login("victim3", "right", "10.22.0.1")).status).toBe(200);
  });

  it("answers each lock-out of an address with a longer Retry-After", async () => {
    await addUser(api.db.handle.db, { username: "victim4", password: "right" });
    const retryAfter = async () => {
      for (let i = 0; i < MAX_PER_ADDRESS; i++) {
        expect((await login("victim4", "wrong", "10.23.0.1")).status).toBe(401);
      }
      const res = await login("victim4", "wrong", "10.23.0.1");
      expect(res.status).toBe(429);
      return Number(res.headers.get("retry-after"));
    };
    const first = await retryAfter();
    expect(first).toBeGreaterThan(55);
    expect(first).toBeLessThanOrEqual(60);
    // The lock-out is over (as if a minute had passed): the next one lasts twice as long.
    await api.sql(
      "update api_login_attempts set blocked_until = now() - interval '1 second' where username = 'victim4'",
    );
    const second = await retryAfter();
    expect(second).toBeGreaterThan(115);
    expect(second).toBeLessThanOrEqual(120);
  });

  it("gives a successful login's reservation back, so a healthy client logs in at will", async () => {
    await addUser(api.db.handle.db, { username: "healthy", password: "right" });
    expect((await login("healthy", "wrong", "10.24.0.1")).status).toBe(401);
    for (let i = 0; i < 3 * MAX_PER_ADDRESS; i++) {
      expect((await login("healthy", "right", "10.24.0.1")).status).toBe(200);
    }
    const concurrent = Array.from({ length: MAX_PER_ADDRESS - 1 }, () =>
      login("healthy", "right", "10.24.0.1"),
    );
    expect((await Promise.all(concurrent)).map((r) => r.status)).toEqual(
      Array(MAX_PER_ADDRESS - 1).fill(200),
    );
    const [pair] = await api.sql<{ failures: number }>(
      "select failures from api_login_attempts where username = 'healthy' and client = '10.24.0.1'",
    );
    expect(pair!.failures).toBe(1);
  });
});

describe("token revocation", () => {
  it("happens when an admin sets a new password or disables a user", async () => {
    const admin = { token: api.adminToken };
    await addUser(api.db.handle.db, { username: "rev", password: "pw1" });
    const first = (await (await login("rev", "pw1", "10.30.0.1")).json()) as string;
    expect((await api.call("GET", "/me", { token: first })).status).toBe(200);
    const reset = await api.call("PATCH", "/users/rev", { ...admin, body: { password: "pw2" } });
    expect(reset.status).toBe(200);
    expect((await api.call("GET", "/me", { token: first })).status).toBe(401);

    const second = (await (await login("rev", "pw2", "10.30.0.1")).json()) as string;
    expect(
      (await api.call("PATCH", "/users/rev", { ...admin, body: { valid: false } })).status,
    ).toBe(200);
    expect(
      (await api.call("PATCH", "/users/rev", { ...admin, body: { valid: true } })).status,
    ).toBe(200);
    expect((await api.call("GET", "/me", { token: second })).status).toBe(401);
    // read_only alone leaves tokens alone.
    const third = (await (await login("rev", "pw2", "10.30.0.1")).json()) as string;
    await api.call("PATCH", "/users/rev", { ...admin, body: { read_only: false } });
    expect((await api.call("GET", "/me", { token: third })).status).toBe(200);
  });

  it(
    "happens on broker users chng and on disabling then enabling",
    { timeout: 120_000 },
    async () => {
      const database = api.db.name;
      const run = (...args: string[]) => runBroker(["users", ...args], { database });
      await addUser(api.db.handle.db, { username: "clirev", password: "pw1" });
      const first = (await (await login("clirev", "pw1", "10.31.0.1")).json()) as string;
      expect((await run("chng", "-u", "clirev", "-p", "pw2")).code).toBe(0);
      expect((await api.call("GET", "/me", { token: first })).status).toBe(401);

      const second = (await (await login("clirev", "pw2", "10.31.0.1")).json()) as string;
      expect((await run("token", "-u", "clirev", "--disable")).code).toBe(0);
      const enabled = await run("token", "-u", "clirev", "--enable");
      expect(enabled.code).toBe(0);
      expect((await api.call("GET", "/me", { token: second })).status).toBe(401);
      expect((await api.call("GET", "/me", { token: enabled.stdout.trim() })).status).toBe(200);
    },
  );
});
