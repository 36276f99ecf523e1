import { readFile } from "node:fs/promises";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { addUser, issueToken } from "../../src/api/credentials.js";
import { hashPassword, hashToken } from "../../src/core/passwords.js";
import { migrate } from "../../src/db/migrate.js";
import { AUTH_TOKEN_MARKER } from "../../src/db/repositories/users.js";
import { runBroker } from "../helpers/cli.js";
import { createTestDatabase } from "../helpers/db.js";
import { ADMIN, basic, READER, startApi, type ApiHarness } from "../helpers/api.js";

/**
 * Authentication and authorisation of the REST API, on a database upgraded from IoTa's schema
 * with an IoTa user whose plaintext token and scrypt password must keep working.
 */

const IOTA_USER = { username: "iota-user", password: "iota pass", salt: "ab".repeat(64) };
const IOTA_TOKEN = "c0ffee".repeat(21) + "ab";

let api: ApiHarness;
const logLines: string[] = [];

beforeAll(async () => {
  const database = await createTestDatabase({ empty: true });
  const pool = database.handle.pool;
  await pool.query(
    await readFile(new URL("../fixtures/iota-v2-schema.sql", import.meta.url), "utf8"),
  );
  await pool.query(
    `insert into users (username, salt, password, auth_token, valid, read_only)
     values ($1, $2, $3, $4, true, true)`,
    [
      IOTA_USER.username,
      IOTA_USER.salt,
      await hashPassword(IOTA_USER.password, IOTA_USER.salt),
      IOTA_TOKEN,
    ],
  );
  await migrate(pool);
  api = await startApi({
    database,
    logLines,
    env: { LOGIN_MAX_FAILURES: "3", API_TRUST_PROXY: "loopback" },
  });
});

afterAll(async () => {
  await api?.close();
});

async function login(username: string, password: string, client = "10.9.9.9"): Promise<Response> {
  return api.call("GET", "/token", {
    headers: { ...basic(username, password), "x-forwarded-for": client },
  });
}

describe("an IoTa users table after the migration", () => {
  it("keeps the IoTa token working, stored only as its hash", async () => {
    const res = await api.call("GET", "/physical/sources/", { token: IOTA_TOKEN });
    expect(res.status).toBe(200);
    const [user] = await api.sql<{ auth_token: string }>(
      "select auth_token from users where username = $1",
      [IOTA_USER.username],
    );
    expect(user!.auth_token).toBe(AUTH_TOKEN_MARKER);
    const stored = await api.sql("select 1 from api_tokens where token_hash = $1", [
      hashToken(IOTA_TOKEN),
    ]);
    expect(stored).toHaveLength(1);
    expect(await api.sql("select 1 from api_tokens where token_hash = $1", [IOTA_TOKEN])).toEqual(
      [],
    );
  });

  it("logs the IoTa user in with their scrypt password", async () => {
    const res = await login(IOTA_USER.username, IOTA_USER.password);
    expect(res.status).toBe(200);
    const token = (await res.json()) as string;
    expect(token).toMatch(/^[0-9a-f]{128}$/);
    expect((await api.call("GET", "/me", { token })).status).toBe(200);
  });

  it("hashes a plaintext token that IoTa's own tooling writes later", async () => {
    const fresh = "feed".repeat(32);
    await api.sql("update users set auth_token = $1 where username = $2", [
      fresh,
      IOTA_USER.username,
    ]);
    expect((await api.call("GET", "/me", { token: fresh })).status).toBe(200);
    // Replacing IoTa's one token revokes the earlier ones, as in IoTa.
    expect((await api.call("GET", "/me", { token: IOTA_TOKEN })).status).toBe(401);
  });
});

describe("bearer tokens", () => {
  it("are required, with a message naming what is wrong", async () => {
    const cases: [Record<string, string>, string][] = [
      [{}, "Not authenticated"],
      [{ authorization: "" }, "Not authenticated"],
      [{ authorization: "Bearer" }, "Invalid authorization header: expected 'Bearer <token>'"],
      [{ authorization: "Bearer a b" }, "Invalid authorization header: expected 'Bearer <token>'"],
      [
        { authorization: `Basic ${api.adminToken}` },
        "Invalid authorization header: expected 'Bearer <token>'",
      ],
      [
        { authorization: `Token ${api.adminToken}` },
        "Invalid authorization header: expected 'Bearer <token>'",
      ],
      [{ authorization: "Bearer short" }, "Invalid or expired token"],
      [{ authorization: `Bearer ${"0".repeat(128)}` }, "Invalid or expired token"],
      [{ authorization: `Bearer ${api.adminToken}x` }, "Invalid or expired token"],
    ];
    for (const [headers, detail] of cases) {
      const res = await api.call("GET", "/physical/sources/", { headers });
      expect(res.status, JSON.stringify(headers)).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe("Bearer");
      expect(await res.json()).toEqual({ detail });
    }
  });

  it("stop working when they expire", async () => {
    const [user] = await api.sql<{
      uid: number;
      username: string;
      valid: boolean;
      read_only: boolean;
    }>("select uid, username, valid, read_only from users where username = $1", [READER.username]);
    const token = await issueToken(api.db.handle.db, user!, 3600);
    expect((await api.call("GET", "/me", { token })).status).toBe(200);
    await api.sql(
      "update api_tokens set expires_at = now() - interval '1 second' where token_hash = $1",
      [hashToken(token)],
    );
    expect((await api.call("GET", "/me", { token })).status).toBe(401);
    expect((await api.call("GET", "/me", { token: api.readerToken })).status).toBe(200);
  });

  it("of disabled users are refused everywhere, /token included", async () => {
    const user = await addUser(api.db.handle.db, {
      username: "sleepy",
      password: "pw",
      readOnly: false,
    });
    const token = await issueToken(api.db.handle.db, user);
    expect((await api.call("GET", "/me", { token })).status).toBe(200);
    await api.sql("update users set valid = false where uid = $1", [user.uid]);
    expect((await api.call("GET", "/me", { token })).status).toBe(401);
    const res = await login("sleepy", "pw");
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: "This user is disabled" });
  });
});

describe("roles", () => {
  it("lets read-only users read, and nothing else but their own password", async () => {
    const reader = { token: api.readerToken };
    expect((await api.call("GET", "/physical/devices/", reader)).status).toBe(200);
    expect((await api.call("HEAD", "/physical/devices/", reader)).status).toBe(200);
    for (const [method, path, body] of [
      ["POST", "/physical/devices/", { name: "x", source_name: "ttn" }],
      ["POST", "/logical/devices/", { name: "x" }],
      ["PATCH", "/mappings/physical/end/1", undefined],
      ["DELETE", "/physical/devices/1", undefined],
      ["GET", "/users", undefined],
      ["POST", "/sources", { source_name: "new" }],
    ] as const) {
      const res = await api.call(method, path, { ...reader, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/read-only/i);
    }
    expect((await api.call("GET", "/users", { token: api.adminToken })).status).toBe(200);
  });

  it("lets any user change their own password, which revokes their tokens", async () => {
    const user = await addUser(api.db.handle.db, { username: "changer", password: "old" });
    const oldToken = await issueToken(api.db.handle.db, user);
    const res = await api.call("POST", "/change-password?password=new%3Apass", { token: oldToken });
    expect(res.status).toBe(200);
    const newToken = (await res.json()) as string;
    expect((await api.call("GET", "/me", { token: oldToken })).status).toBe(401);
    expect(await (await api.call("GET", "/me", { token: newToken })).json()).toEqual({
      uid: user.uid,
      username: "changer",
      valid: true,
      read_only: true,
    });
    expect((await login("changer", "old")).status).toBe(401);
    expect((await login("changer", "new:pass")).status).toBe(200);
    const viaBody = await api.call("POST", "/change-password", {
      token: newToken,
      body: { password: "third" },
    });
    expect(viaBody.status).toBe(200);
    expect((await login("changer", "third")).status).toBe(200);
    const missing = await api.call("POST", "/change-password", {
      token: (await viaBody.json()) as string,
    });
    expect(missing.status).toBe(422);
  });
});

describe("GET /token", () => {
  it("issues a new working token per login; passwords may contain ':'", async () => {
    const first = await login(ADMIN.username, ADMIN.password);
    const second = await login(ADMIN.username, ADMIN.password);
    expect(first.status).toBe(200);
    const tokens = [(await first.json()) as string, (await second.json()) as string];
    expect(tokens[0]).not.toBe(tokens[1]);
    for (const token of tokens) {
      expect((await api.call("GET", "/physical/sources/", { token })).status).toBe(200);
    }
  });

  it("answers 401 for wrong or missing credentials", async () => {
    const wrong = await login(READER.username, "nope", "10.1.1.1");
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toBe("Basic");
    expect(await wrong.json()).toEqual({ detail: "Incorrect username or password" });
    expect((await login("nobody", "x", "10.1.1.2")).status).toBe(401);
    expect((await api.call("GET", "/token")).status).toBe(401);
    expect(
      (await api.call("GET", "/token", { headers: { authorization: "Basic !!" } })).status,
    ).toBe(401);
  });

  it("limits failed attempts per user name and client address", async () => {
    await addUser(api.db.handle.db, { username: "target", password: "right" });
    for (let i = 0; i < 3; i++) {
      expect((await login("target", "wrong", "10.2.0.1")).status).toBe(401);
    }
    const limited = await login("target", "right", "10.2.0.1");
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    // The same user from another address, and another user from that address, still log in.
    expect((await login("target", "right", "10.2.0.2")).status).toBe(200);
    expect((await login(READER.username, READER.password, "10.2.0.1")).status).toBe(200);
  });

  it("never counts successful logins", async () => {
    for (let i = 0; i < 10; i++) {
      expect((await login(READER.username, READER.password, "10.4.0.1")).status).toBe(200);
    }
    expect(
      await api.sql("select failures from api_login_attempts where client = '10.4.0.1'"),
    ).toEqual([{ failures: 0 }]);
  });
});

describe("users (admin only)", () => {
  it("creates, lists, changes, refreshes and removes users", async () => {
    const admin = { token: api.adminToken };
    const made = await api.call("POST", "/users", {
      ...admin,
      body: { username: "carol", password: "pw1" },
    });
    expect(made.status).toBe(201);
    expect(made.headers.get("location")).toBe(`${api.base}/users/carol`);
    const carol = (await made.json()) as { uid: number };
    expect(carol).toEqual({ uid: carol.uid, username: "carol", valid: true, read_only: true });
    expect(
      (await api.call("POST", "/users", { ...admin, body: { username: "carol", password: "x" } }))
        .status,
    ).toBe(409);
    const bad = await api.call("POST", "/users", {
      ...admin,
      body: { username: "a:b", password: "x", role: 1 },
    });
    expect(bad.status).toBe(422);
    const names = (
      (await (await api.call("GET", "/users", admin)).json()) as { username: string }[]
    ).map((u) => u.username);
    expect(names).toContain("carol");
    const patched = await api.call("PATCH", "/users/carol", {
      ...admin,
      body: { read_only: false, password: "pw2" },
    });
    expect(await patched.json()).toMatchObject({ read_only: false });
    const token = (await (await login("carol", "pw2")).json()) as string;
    const refreshed = await api.call("POST", "/users/carol/token", admin);
    expect((await api.call("GET", "/me", { token })).status).toBe(401);
    expect(
      (await api.call("GET", "/me", { token: (await refreshed.json()) as string })).status,
    ).toBe(200);
    expect((await api.call("DELETE", "/users/carol", admin)).status).toBe(204);
    expect((await api.call("GET", "/users/carol", admin)).status).toBe(404);
    expect((await api.call("DELETE", "/users/carol", admin)).status).toBe(404);
  });
});

// Each `broker` run starts a Node process: seconds apiece on a busy two-core machine.
describe("broker users", { timeout: 120_000 }, () => {
  it("adds, issues tokens, disables, changes passwords, removes and lists", async () => {
    const database = api.db.name;
    const run = (...args: string[]) => runBroker(["users", ...args], { database });
    expect((await run("add", "-u", "dave", "-p", "pw", "-a")).code).toBe(0);
    const issued = await run("token", "-u", "dave");
    expect(issued.code).toBe(0);
    expect(issued.stderr).toMatch(/stored hashed/);
    const token = issued.stdout.trim();
    const admin = { token, body: { source_name: "cli_src" } };
    expect((await api.call("POST", "/sources", admin)).status).toBe(201);
    const disabled = await run("token", "-u", "dave", "--refresh", "--disable");
    expect(disabled.code).toBe(0);
    expect(disabled.stderr).toMatch(/disabled and their tokens revoked; no token issued/);
    expect(disabled.stdout).toBe("");
    expect((await api.call("GET", "/me", { token })).status).toBe(401);
    // Re-enabled, the old token stays revoked: disabling revoked it for good.
    const enabled = await run("token", "-u", "dave", "--enable");
    expect((await api.call("GET", "/me", { token })).status).toBe(401);
    expect((await api.call("GET", "/me", { token: enabled.stdout.trim() })).status).toBe(200);
    expect((await run("token", "-u", "dave", "--disable")).stdout).toBe("");
    const noPassword = await run("chng", "-u", "dave");
    expect(noPassword.code).toBe(1);
    expect(noPassword.stderr.trim().split("\n")).toEqual([
      "error: give the new password with -p/--password",
    ]);
    expect((await run("chng", "-u", "dave", "-p", "new:pw")).code).toBe(0);
    // A disabled user with the right password hears that they are disabled.
    expect((await login("dave", "new:pw", "10.5.0.1")).status).toBe(403);
    expect((await run("rm", "-u", "dave")).code).toBe(0);
    const ls = await run("ls");
    expect(JSON.parse(ls.stdout)).toEqual([
      "iota-user",
      "admin",
      "reader",
      "sleepy",
      "changer",
      "target",
    ]);
  });
});

describe("secrets", () => {
  it("never appear in the logs", () => {
    const log = logLines.join("");
    expect(log).toContain('"path":"/token"');
    for (const secret of [
      api.adminToken,
      api.readerToken,
      ADMIN.password,
      READER.password,
      IOTA_TOKEN,
      "new:pass",
      "new%3Apass",
    ]) {
      expect(log).not.toContain(secret);
    }
  });
});
