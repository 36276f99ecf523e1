import { request } from "node:http";
import { brotliCompressSync, deflateSync } from "node:zlib";

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

/** A request as sent on the wire, headers and path untouched (fetch would normalise them). */
function raw(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer | string,
): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}> {
  const url = new URL(api.origin);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, setHost: !("host" in headers) },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const auth = () => ({ authorization: `Bearer ${api.adminToken}` });

/** Log lines at error level (pino: 50) or above. */
function errorLines(): string[] {
  return logLines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
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

describe("malformed requests", () => {
  it("answer 400 for a malformed percent-escape in the path, and log no error", async () => {
    for (const path of [
      "/broker/api/physical/devices/%ff",
      "/broker/api/logical/devices/%E0%A4%A",
      "/broker/api/docs-assets/%ff",
      "/docs-assets/%ff",
    ]) {
      const res = await raw("GET", path, auth());
      expect(res.status, path).toBe(400);
      expect(JSON.parse(res.body), path).toEqual({
        detail: "the path has a malformed percent-escape",
      });
    }
    expect(errorLines()).toEqual([]);
  });

  it("answer 400 for a body whose Content-Encoding cannot be decoded", async () => {
    const good = JSON.stringify({ name: "compressed" });
    const post = (encoding: string, body: Buffer) =>
      raw(
        "POST",
        "/broker/api/logical/devices/",
        { ...auth(), "content-type": "application/json", "content-encoding": encoding },
        body,
      );
    for (const [encoding, body] of [
      ["deflate", Buffer.from("this is not deflate")],
      ["br", Buffer.from("this is not brotli at all")],
      ["gzip", Buffer.from("not gzip")],
      ["deflate", deflateSync(good).subarray(0, 6)],
    ] as const) {
      const res = await post(encoding, body);
      expect(res.status, encoding).toBe(400);
      expect(JSON.parse(res.body)).toEqual({
        detail: `the body cannot be decoded as Content-Encoding: ${encoding}`,
      });
    }
    expect(errorLines()).toEqual([]);
    // Well-formed compressed bodies still work.
    for (const [encoding, body] of [
      ["deflate", deflateSync(good)],
      ["br", brotliCompressSync(good)],
    ] as const) {
      expect((await post(encoding, body)).status, encoding).toBe(201);
    }
  });
});

describe("Location", () => {
  async function locationOf(headers: Record<string, string>): Promise<string> {
    const res = await raw(
      "POST",
      "/broker/api/logical/devices/",
      { ...auth(), "content-type": "application/json", ...headers },
      JSON.stringify({ name: "located" }),
    );
    expect(res.status).toBe(201);
    const uid = (JSON.parse(res.body) as { uid: number }).uid;
    const location = res.headers.location as string;
    expect(location.endsWith(`/broker/api/logical/devices/${uid}`)).toBe(true);
    return location.slice(0, -`/broker/api/logical/devices/${uid}`.length);
  }

  it("is the request URL, as IoTa's, for a well-formed Host and an http(s) scheme", async () => {
    expect(await locationOf({})).toBe(api.origin);
    expect(await locationOf({ host: "iota.example.org:8080", "x-forwarded-proto": "https" })).toBe(
      "https://iota.example.org:8080",
    );
    expect(await locationOf({ host: "[::1]:5687" })).toBe("http://[::1]:5687");
  });

  it("never takes another scheme or a malformed Host from the client", async () => {
    expect(await locationOf({ "x-forwarded-proto": "javascript" })).toBe(api.origin);
    expect(await locationOf({ host: "evil.example", "x-forwarded-proto": "javascript" })).toBe(
      "http://evil.example",
    );
    // A Host that is no host name: the Location is the path alone (a relative reference).
    for (const host of ["evil.example/x?", "a b", "evil.example:99999", "user@evil.example"]) {
      expect(await locationOf({ host }), host).toBe("");
    }
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

describe("CSV exports", () => {
  it("escape text cells a spreadsheet would read as a formula; numbers stay numbers", async () => {
    const [device] = await api.sql<{ uid: number }>(
      "insert into physical_devices (name, source_name) values ('csv', 'ttn') returning uid",
    );
    const message = {
      broker_correlation_id: "5f1c7a7e-7d1e-4a40-9a4b-5a5f8f0e8b21",
      p_uid: device!.uid,
      timestamp: "2024-01-01T00:00:00Z",
      timeseries: [
        { name: "=cmd|' /C calc'!A0", value: "@SUM(1+1)" },
        { name: "neg", value: -3.2 },
        { name: "+plus", value: "-3.2" },
        { name: "tab", value: "\t=1" },
        { name: "plain", value: "a,b" },
      ],
    };
    await api.sql(
      "insert into physical_timeseries (physical_uid, ts, json_msg) values ($1, '2024-01-01T00:00:00Z', $2)",
      [device!.uid, JSON.stringify(message)],
    );
    const res = await api.call("GET", `/messages?p_uid=${device!.uid}&format=csv`, {
      token: api.readerToken,
    });
    expect(res.status).toBe(200);
    const lines = (await res.text()).split("\r\n").slice(1, -1);
    expect(lines.map((l) => l.split(",").slice(4).join(","))).toEqual([
      "'=cmd|' /C calc'!A0,'@SUM(1+1)",
      "neg,-3.2",
      "'+plus,-3.2",
      "tab,'\t=1",
      'plain,"a,b"',
    ]);
  });
});

describe("response headers", () => {
  it("forbid framing the docs page and sniffing content types", async () => {
    for (const path of ["/broker/api/docs", "/docs", "/broker/api/openapi.json"]) {
      const res = await fetch(`${api.origin}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("x-frame-options"), path).toBe("DENY");
      expect(res.headers.get("content-security-policy"), path).toContain("frame-ancestors 'none'");
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
    }
    const api404 = await api.call("GET", "/nowhere", { token: api.readerToken });
    expect(api404.headers.get("x-content-type-options")).toBe("nosniff");
  });
});

describe("error bodies", () => {
  const MARK = "1; select pg_sleep(5)--";

  it("never echo a rejected value", async () => {
    const admin = { token: api.adminToken };
    const m = encodeURIComponent(MARK);
    const attempts: [string, string, unknown][] = [
      ["POST", "/physical/devices/", { name: "x", source_name: MARK }],
      ["PATCH", "/physical/devices/", { uid: 1, name: "x", source_name: MARK }],
      ["POST", "/physical/devices/", { name: "x", source_name: "ttn", location: MARK }],
      ["POST", "/logical/devices/", { name: MARK, last_seen: MARK }],
      ["POST", "/mappings/", { pd: MARK, ld: 1, start_time: MARK }],
      ["POST", "/users", { username: "admin", password: "x" }],
      ["POST", "/users", { username: `${MARK}:`, password: "x" }],
      ["POST", "/sources", { source_name: MARK }],
      ["GET", `/physical/devices/${m}`, undefined],
      ["GET", `/physical/devices/?source_name=${m}&include_properties=${m}&limit=${m}`, undefined],
      ["GET", `/messages?p_uid=${m}&last=${m}`, undefined],
      ["GET", `/messages?p_uid=1&start=${m}&end=${m}&format=${m}`, undefined],
      ["GET", `/raw-messages/${m}`, undefined],
      ["GET", `/raw-messages?after=${m}&start=${m}`, undefined],
      ["GET", `/mappings/current/?return_uids=${m}`, undefined],
      ["PATCH", `/mappings/toggle-active/?is_active=${m}&puid=${m}`, undefined],
      ["GET", `/events?since=${m}&entity=${m}`, undefined],
      ["GET", `/sources/${m}`, undefined],
      ["GET", `/users/${m}`, undefined],
    ];
    for (const [method, path, body] of attempts) {
      const res = await api.call(method, path, { ...admin, body });
      const text = await res.text();
      expect(res.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      expect(res.status, `${method} ${path}`).toBeLessThan(500);
      expect(text, `${method} ${path}`).not.toContain("pg_sleep");
      expect(text, `${method} ${path}`).not.toContain("admin");
    }
  });
});

describe("unknown body fields", () => {
  it("are ignored, as IoTa's models did, and their names logged (never their values)", async () => {
    const res = await api.call("POST", "/logical/devices/", {
      token: api.adminToken,
      body: { name: "with extras", colour: "secret-value" },
    });
    expect(res.status).toBe(201);
    const line = logLines.find((l) => l.includes("ignored unknown body fields"));
    expect(JSON.parse(line!)).toMatchObject({
      route: "POST /logical/devices/",
      fields: ["colour"],
    });
    expect(logLines.join("")).not.toContain("secret-value");
  });
});
