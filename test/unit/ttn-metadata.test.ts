import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { ConfigError } from "../../src/core/config.js";
import { retryAfterMs } from "../../src/core/retry-after.js";
import { metadataFromApi } from "../../src/sources/ttn/metadata.js";
import {
  authorizationHeader,
  DEFAULT_TTN_API_URL,
  loadTtnSettings,
} from "../../src/sources/ttn/settings.js";
import { Environment } from "../../src/core/environment.js";

const fixtures = new URL("../fixtures/recorded/", import.meta.url);
const apiRecord = JSON.parse(
  readFileSync(new URL("ttn_api_device_details_temphumid-netvox-r718a.json", fixtures), "utf8"),
) as Record<string, unknown>;

describe("device metadata from The Things Stack API", () => {
  it("takes the name of the recorded device (which has no location)", () => {
    expect(metadataFromApi(apiRecord)).toEqual({ name: "GN2", location: null });
  });

  it("takes the user-set location", () => {
    const located = {
      ...apiRecord,
      locations: {
        user: { latitude: -33.86, longitude: 151.2, altitude: 10, source: "SOURCE_REGISTRY" },
      },
    };
    expect(metadataFromApi(located)).toEqual({
      name: "GN2",
      location: { lat: -33.86, long: 151.2 },
    });
  });

  it("ignores a missing or empty name and impossible coordinates", () => {
    expect(metadataFromApi({ name: "" })).toEqual({ name: undefined, location: null });
    expect(
      metadataFromApi({ locations: { user: { latitude: 91, longitude: 0 } } }).location,
    ).toBeNull();
    expect(metadataFromApi({ locations: { user: { latitude: 1 } } }).location).toBeNull();
    expect(metadataFromApi("nonsense")).toEqual({ name: undefined, location: null });
  });

  it("reads Retry-After as seconds or as an HTTP date", () => {
    const now = Date.parse("2024-01-01T00:00:00Z");
    expect(retryAfterMs("3", now)).toBe(3000);
    expect(retryAfterMs("Mon, 01 Jan 2024 00:00:10 GMT", now)).toBe(10_000);
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs("soon", now)).toBeUndefined();
  });
});

describe("TTN settings", () => {
  it("has IoTa's defaults", () => {
    const s = loadTtnSettings({ env: new Environment({}), production: false });
    expect(s.api).toMatchObject({
      authorization: undefined,
      url: DEFAULT_TTN_API_URL,
      timeoutMs: 5000,
    });
    expect(s.decoders).toMatchObject({ dir: undefined, locally: [], timeoutMs: 100, memoryMb: 64 });
    expect(s.acceptSimulated).toBe(true);
    expect(s.auth).toEqual({
      secret: undefined,
      secretHeader: "X-Webhook-Secret",
      basic: undefined,
    });
  });

  it("accepts IoTa's whole header value or a bare token", () => {
    expect(authorizationHeader("Bearer NNSXS.ABC")).toBe("Bearer NNSXS.ABC");
    expect(authorizationHeader("NNSXS.ABC")).toBe("Bearer NNSXS.ABC");
  });

  it("reads the lists and switches", () => {
    const s = loadTtnSettings({
      production: false,
      env: new Environment({
        TTN_API_TOKEN: "NNSXS.X",
        TTN_API_URL: "https://au1.cloud.thethings.network/api/v3/",
        TTN_DECODERS_DIR: "/decoders",
        TTN_DECODE_LOCALLY: "a, b",
        TTN_ACCEPT_SIMULATED: "false",
        TTN_WEBHOOK_BASIC_USER: "u",
        TTN_WEBHOOK_BASIC_PASSWORD: "p",
      }),
    });
    expect(s.api.authorization).toBe("Bearer NNSXS.X");
    expect(s.api.url).toBe("https://au1.cloud.thethings.network/api/v3");
    expect(s.decoders.locally).toEqual(["a", "b"]);
    expect(s.acceptSimulated).toBe(false);
    expect(s.auth.basic).toEqual({ user: "u", password: "p" });
    expect(
      loadTtnSettings({
        env: new Environment({ TTN_DECODERS_DIR: "/d", TTN_DECODE_LOCALLY: "ALL" }),
        production: false,
      }).decoders.locally,
    ).toBe("all");
  });

  it.each([
    [{ TTN_WEBHOOK_BASIC_USER: "u" }, /TTN_WEBHOOK_BASIC_PASSWORD/],
    [{ TTN_DECODE_LOCALLY: "all" }, /TTN_DECODERS_DIR/],
    [{ TTN_ACCEPT_SIMULATED: "maybe" }, /TTN_ACCEPT_SIMULATED/],
    [{ TTN_API_URL: "not a url" }, /TTN_API_URL/],
    [{ TTN_WEBHOOK_SECRET_HEADER: "bad header" }, /TTN_WEBHOOK_SECRET_HEADER/],
    [{ TTN_WEBHOOK_AUTH: "off" }, /TTN_WEBHOOK_AUTH/],
    [{ TTN_WEBHOOK_AUTH: "none", TTN_WEBHOOK_SECRET: "s" }, /TTN_WEBHOOK_AUTH: is none/],
    [{ TTN_WEBHOOK_AUTH: "required" }, /TTN_WEBHOOK_SECRET: the webhook needs credentials/],
  ])("refuses %o", (env, message) => {
    expect(() => loadTtnSettings({ env: new Environment(env), production: false })).toThrow(
      ConfigError,
    );
    expect(() => loadTtnSettings({ env: new Environment(env), production: false })).toThrow(
      message,
    );
  });

  it("runs the webhook open outside production, and says why", () => {
    expect(loadTtnSettings({ env: new Environment({}), production: false }).openWebhook).toBe(
      "default",
    );
    const chosen = { env: new Environment({ TTN_WEBHOOK_AUTH: "none" }), production: false };
    expect(loadTtnSettings(chosen).openWebhook).toBe("chosen");
    const secret = { env: new Environment({ TTN_WEBHOOK_SECRET: "s" }), production: false };
    expect(loadTtnSettings(secret).openWebhook).toBeUndefined();
  });

  it("in production, refuses an open webhook unless TTN_WEBHOOK_AUTH=none says so", () => {
    expect(() => loadTtnSettings({ env: new Environment({}), production: true })).toThrow(
      /TTN_WEBHOOK_SECRET: the webhook needs credentials \(BROKER_ENV=production\).*TTN_WEBHOOK_AUTH=none/,
    );
    const open = loadTtnSettings({
      env: new Environment({ TTN_WEBHOOK_AUTH: "none" }),
      production: true,
    });
    expect(open.openWebhook).toBe("chosen");
    expect(open.auth.secret).toBeUndefined();
    for (const env of [
      { TTN_WEBHOOK_SECRET: "s" } as Record<string, string>,
      { TTN_WEBHOOK_BASIC_USER: "u", TTN_WEBHOOK_BASIC_PASSWORD: "p" },
    ]) {
      expect(
        loadTtnSettings({ env: new Environment(env), production: true }).openWebhook,
      ).toBeUndefined();
    }
  });
});
