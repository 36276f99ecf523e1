import { request } from "node:http";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ADMIN, READER } from "../helpers/api.js";
import { launchBrowser, startWeb, type WebHarness } from "../helpers/browser.js";
import { cleanupAmqp, isolatedAmqpConfig } from "../helpers/bus.js";
import { startTestSystem, testConfig } from "../helpers/system.js";

let h: WebHarness;
let browser: Awaited<ReturnType<typeof launchBrowser>>;

beforeAll(async () => {
  h = await startWeb();
  browser = await launchBrowser({});
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
});

/** A request whose path is sent exactly as written (no dot-segment resolution). */
function rawRequest(method: string, url: string, headers: Record<string, string>): Promise<number> {
  const { port, pathname } = new URL(url.replace(/%2e/gi, "_DOT_"));
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, method, path: pathname.replaceAll("_DOT_", "%2e"), headers },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify({ password: "taken-over-now" }));
  });
}

async function signIn(user: { username: string; password: string }) {
  await browser.context.clearCookies();
  const page = await browser.context.newPage();
  page.on("pageerror", (err) => console.error("page error:", err.message));
  await page.goto(`${h.base}/`);
  await page.waitForURL(/\/iota\/login$/);
  await page.screenshot({ path: "test-results/web-login.png" });
  await page.fill("#username", user.username);
  await page.fill("#password", user.password);
  await page.click("#sign-in");
  await page.waitForSelector("#logical-devices");
  return page;
}

describe("web app session", () => {
  it("sends every page but the login to sign in, with security headers", async () => {
    const answer = await fetch(`${h.base}/`, { redirect: "manual" });
    expect(answer.status).toBe(302);
    expect(answer.headers.get("location")).toBe("/iota/login");
    const login = await fetch(`${h.base}/login`);
    expect(login.status).toBe(200);
    expect(login.headers.get("x-frame-options")).toBe("DENY");
    expect(login.headers.get("x-content-type-options")).toBe("nosniff");
    expect(login.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect((await fetch(`${h.base}/api/logical/devices/`)).status).toBe(401);
    expect((await fetch(`${h.base.replace("/iota", "")}/elsewhere`)).status).toBe(404);
  });

  it("logs in with an API user, sets an HttpOnly SameSite cookie, and signs out revoking the token", async () => {
    const page = await signIn(ADMIN);
    const [cookie] = await browser.context.cookies(h.base);
    expect(cookie).toMatchObject({
      name: "iota_session",
      httpOnly: true,
      sameSite: "Strict",
      secure: false,
    });
    expect(await page.textContent("#who")).toBe("admin");
    await page.screenshot({ path: "test-results/web-logical-devices.png", fullPage: true });
    const tokens = await h.api.sql("select count(*)::int as n from api_tokens");
    await page.click("#sign-out");
    await page.waitForURL(/\/iota\/login$/);
    const after = await h.api.sql("select count(*)::int as n from api_tokens");
    expect(after[0]!.n).toBe((tokens[0]!.n as number) - 1);
    // The old cookie no longer works anywhere.
    const stale = await fetch(`${h.base}/api/logical/devices/`, {
      headers: { cookie: `iota_session=${cookie!.value}` },
    });
    expect(stale.status).toBe(401);
    await page.close();
  });

  it("refuses a change without the CSRF token or from another origin", async () => {
    const page = await signIn(ADMIN);
    const [cookie] = await browser.context.cookies(h.base);
    const headers = { cookie: `iota_session=${cookie!.value}`, "content-type": "application/json" };
    const noCsrf = await fetch(`${h.base}/api/logical/devices/`, {
      method: "POST",
      headers,
      body: JSON.stringify({ name: "sneaky" }),
    });
    expect(noCsrf.status).toBe(403);
    const session = (await (await fetch(`${h.base}/session`, { headers })).json()) as {
      csrf: string;
    };
    const crossSite = await fetch(`${h.base}/api/logical/devices/`, {
      method: "POST",
      headers: { ...headers, "x-csrf-token": session.csrf, origin: "http://evil.example" },
      body: JSON.stringify({ name: "sneaky" }),
    });
    expect(crossSite.status).toBe(403);
    const withCsrf = await fetch(`${h.base}/api/logical/devices/`, {
      method: "POST",
      headers: { ...headers, "x-csrf-token": session.csrf },
      body: JSON.stringify({ name: "fine" }),
    });
    expect(withCsrf.status).toBe(201);
    // The session endpoints are not reachable through the API path, not even by dot segments
    // (sent raw: fetch would resolve them before sending).
    for (const path of ["change-password", "x/%2e%2e/change-password", "x/%2E./token"]) {
      const status = await rawRequest("POST", `${h.base}/api/${path}`, {
        ...headers,
        "x-csrf-token": session.csrf,
        "content-type": "application/json",
      });
      expect(status, path).toBe(404);
    }
    expect(await h.api.sql("select name from logical_devices")).toEqual([{ name: "fine" }]);
    await page.close();
  });

  it("shows a read-only user no controls and the API refuses them", async () => {
    await h.api.sql("insert into physical_devices (name, source_name) values ('pd-ro', 'ttn')");
    const page = await signIn(READER);
    expect(await page.textContent("#who")).toBe("reader (read-only)");
    await page.goto(`${h.base}/#/physical-devices`);
    await page.waitForSelector("#physical-devices tbody tr");
    expect(await page.locator("#create-mappings").count()).toBe(0);
    expect(await page.locator("#physical-devices input[type=checkbox]").count()).toBe(0);
    await page.click("#physical-devices a");
    await page.waitForSelector("#mapping-status");
    expect(await page.locator("#save-device, #create-mapping, #add-note").count()).toBe(0);
    // Trying anyway, from the page's own context with its CSRF token: the API says no.
    const status = await page.evaluate(async () => {
      const s = (await (await fetch("/iota/session")).json()) as { csrf: string };
      const r = await fetch("/iota/api/logical/devices/", {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrf-token": s.csrf },
        body: JSON.stringify({ name: "nope" }),
      });
      return r.status;
    });
    expect(status).toBe(403);
    await page.close();
  });

  it("refuses a wrong password with the API's answer", async () => {
    const page = await browser.context.newPage();
    await page.goto(`${h.base}/login`);
    await page.fill("#username", ADMIN.username);
    await page.fill("#password", "wrong");
    await page.click("#sign-in");
    await page.waitForSelector("#login-error:not([hidden])");
    expect(await page.textContent("#login-error")).toBe("Incorrect username or password");
    await page.close();
  });

  it("passes the client's address to the API, so login limits count the real client", async () => {
    // The web app trusts a proxy on loopback (WEB_TRUST_PROXY), as the API trusts the web app.
    const answer = await fetch(`${h.base}/session`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": "203.0.113.9" },
      body: JSON.stringify({ username: "nobody-here", password: "wrong" }),
    });
    expect(answer.status).toBe(401);
    const clients = await h.api.sql<{ client: string }>(
      "select client from api_login_attempts where username = 'nobody-here' and client <> ''",
    );
    expect(clients).toEqual([{ client: "203.0.113.9" }]);
  });

  it("changes the password, keeping the session signed in with a new token", async () => {
    const page = await signIn(READER);
    await page.goto(`${h.base}/#/account`);
    await page.fill("#new-password", "short");
    await page.fill("#confirm-password", "short");
    await page.click("#change-password");
    await page.waitForSelector("#flash.error");
    await page.fill("#new-password", "a-new-reader-password");
    await page.fill("#confirm-password", "a-new-reader-password");
    await page.click("#change-password");
    await page.waitForSelector("#flash.ok");
    await page.screenshot({ path: "test-results/web-account.png" });
    // Still signed in (the cookie holds the new token), and the new password works.
    await page.goto(`${h.base}/#/logical-devices`);
    await page.waitForSelector("#logical-devices");
    await page.close();
    const again = await signIn({ username: READER.username, password: "a-new-reader-password" });
    expect(await again.textContent("#who")).toBe("reader (read-only)");
    await again.close();
  });

  it("marks the cookie Secure behind a TLS proxy", async () => {
    const answer = await fetch(`${h.base}/session`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-proto": "https" },
      body: JSON.stringify(ADMIN),
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("set-cookie")).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
  });

  it("answers 502 with a clear message when the API does not answer", async () => {
    const amqp = isolatedAmqpConfig();
    const lonely = await startTestSystem(
      ["web"],
      testConfig(h.api.db, amqp, { WEB_PORT: "0", WEB_API_URL: "http://127.0.0.1:1" }),
    );
    try {
      const base = `http://127.0.0.1:${lonely.components[0]!.port!()}/iota`;
      const answer = await fetch(`${base}/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(ADMIN),
      });
      expect(answer.status).toBe(502);
      expect(await answer.json()).toEqual({ detail: "The REST API did not answer" });
    } finally {
      await lonely.stop();
      await cleanupAmqp(amqp, []);
    }
  });
});
