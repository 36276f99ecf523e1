import { describe, expect, it } from "vitest";

import {
  cookieValue,
  csrfMatches,
  csrfToken,
  sameOrigin,
  sessionCookie,
  sessionToken,
} from "../../src/web/session.js";
import { webSettings } from "../../src/web/settings.js";
import { Environment } from "../../src/core/environment.js";

const TOKEN = "ab".repeat(64);

describe("web session", () => {
  it("reads the session token only when it has a token's shape", () => {
    expect(sessionToken(`a=1; iota_session=${TOKEN}; b=2`)).toBe(TOKEN);
    expect(sessionToken("iota_session=not-a-token")).toBeUndefined();
    expect(sessionToken(undefined)).toBeUndefined();
    expect(cookieValue("x=1;y = 2", "y")).toBe("2");
  });

  it("derives a CSRF token that only the session's own matches", () => {
    const csrf = csrfToken(TOKEN);
    expect(csrf).toMatch(/^[0-9a-f]{64}$/);
    expect(csrf).not.toContain(TOKEN.slice(0, 16));
    expect(csrfMatches(TOKEN, csrf)).toBe(true);
    expect(csrfMatches("cd".repeat(64), csrf)).toBe(false);
    expect(csrfMatches(TOKEN, undefined)).toBe(false);
    expect(csrfMatches(TOKEN, csrf.slice(1))).toBe(false);
  });

  it("writes an HttpOnly SameSite=Strict cookie, Secure when asked, and clears it", () => {
    expect(sessionCookie(TOKEN, { secure: false })).toBe(
      `iota_session=${TOKEN}; Path=/iota; HttpOnly; SameSite=Strict`,
    );
    expect(sessionCookie(TOKEN, { secure: true })).toMatch(/; Secure$/);
    expect(sessionCookie("", { secure: false, clear: true })).toMatch(
      /^iota_session=; .*Max-Age=0$/,
    );
  });

  it("accepts changes from its own origin only", () => {
    expect(sameOrigin({ origin: "http://h:5000", host: "h:5000" })).toBe(true);
    expect(sameOrigin({ origin: "http://evil:5000", host: "h:5000" })).toBe(false);
    expect(sameOrigin({ origin: "null", host: "h:5000" })).toBe(false);
    expect(sameOrigin({ host: "h:5000", fetchSite: "cross-site" })).toBe(false);
    expect(sameOrigin({ host: "h:5000", fetchSite: "same-origin" })).toBe(true);
    expect(sameOrigin({ host: "h:5000" })).toBe(true);
  });
});

describe("web settings", () => {
  it("defaults to IoTa's port and the API on this host", () => {
    const s = webSettings({ env: new Environment({ API_PORT: "6000" }) });
    expect(s).toMatchObject({ port: 5000, apiUrl: "http://127.0.0.1:6000", secureCookies: "auto" });
    expect(s.tileUrl).toBeUndefined();
    expect(() =>
      webSettings({ env: new Environment({ WEB_TILE_URL: "javascript:alert(1)" }) }),
    ).toThrow(/WEB_TILE_URL/);
  });
});
