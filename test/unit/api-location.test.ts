import { describe, expect, it } from "vitest";

import { hostName, parsePublicUrl, publicOrigin } from "../../src/api/location.js";
import { apiSettings } from "../../src/api/settings.js";
import { Environment } from "../../src/core/environment.js";

const any = { publicUrl: undefined, hosts: [] };
const req = (host: string | undefined, protocol = "http", encrypted = false) => ({
  host,
  protocol,
  encrypted,
});

describe("Location origins", () => {
  it("take the request's http(s) scheme and a well-formed Host, as IoTa", () => {
    expect(publicOrigin(req("Example.org:8080", "https"), any)).toBe("https://example.org:8080");
    expect(publicOrigin(req("10.0.0.1"), any)).toBe("http://10.0.0.1");
    expect(publicOrigin(req("[::1]:5687"), any)).toBe("http://[::1]:5687");
  });

  it("never take another scheme: the connection's own is used instead", () => {
    expect(publicOrigin(req("a.example", "javascript"), any)).toBe("http://a.example");
    expect(publicOrigin(req("a.example", "data", true), any)).toBe("https://a.example");
  });

  it("leave out a malformed or unconfigured host (a relative Location)", () => {
    for (const host of [
      undefined,
      "",
      "a b",
      "x/y",
      "a.example:0",
      "a.example:65536",
      "u@h",
      "-a.example",
    ]) {
      expect(publicOrigin(req(host), any), String(host)).toBe("");
    }
    const configured = { publicUrl: undefined, hosts: ["api.example.org"] };
    expect(publicOrigin(req("API.example.org:443", "https"), configured)).toBe(
      "https://api.example.org:443",
    );
    expect(publicOrigin(req("evil.example"), configured)).toBe("");
    expect(hostName("API.Example.org:80")).toBe("api.example.org");
  });

  it("are the public URL when one is configured, whatever the request says", () => {
    const settings = { publicUrl: "https://iota.example.org/base", hosts: [] };
    expect(publicOrigin(req("evil.example", "javascript"), settings)).toBe(
      "https://iota.example.org/base",
    );
    expect(parsePublicUrl("https://iota.example.org/base/")).toEqual({
      url: "https://iota.example.org/base",
    });
    expect(parsePublicUrl("javascript://x")).toEqual({ error: "must be an http or https URL" });
    expect(parsePublicUrl("https://u:p@x.org")).toHaveProperty("error");
    expect(parsePublicUrl("nope")).toHaveProperty("error");
  });

  it("are configured by API_PUBLIC_URL and API_HOSTS", () => {
    const pg = { poolSize: 10 } as never;
    const settings = apiSettings({
      env: new Environment({
        API_PUBLIC_URL: "https://iota.example.org/",
        API_HOSTS: " A.example , b.example",
      }),
      pg,
    });
    expect(settings.publicUrl).toBe("https://iota.example.org");
    expect(settings.hosts).toEqual(["a.example", "b.example"]);
    expect(() =>
      apiSettings({ env: new Environment({ API_PUBLIC_URL: "ftp://x.org" }), pg }),
    ).toThrow(/API_PUBLIC_URL: must be an http or https URL/);
  });
});
