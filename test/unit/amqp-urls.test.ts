import { describe, expect, it } from "vitest";

import { nodeUrls } from "../../src/bus/connection.js";
import { ConfigError, loadConfig } from "../../src/core/config.js";

describe("AMQP_URL with a cluster's nodes", () => {
  it("accepts a comma-separated list and splits it into node URLs", () => {
    const config = loadConfig({
      AMQP_URL: "amqp://u:p@a:5672/%2F, amqp://u:p@b:5672/%2F,amqp://u:p@c:5672/%2F",
    });
    expect(nodeUrls(config.amqp.url)).toEqual([
      "amqp://u:p@a:5672/%2F",
      "amqp://u:p@b:5672/%2F",
      "amqp://u:p@c:5672/%2F",
    ]);
    expect(nodeUrls("amqp://one/")).toEqual(["amqp://one/"]);
  });

  it("refuses a list with something that is not a URL", () => {
    expect(() => loadConfig({ AMQP_URL: "amqp://a:5672/,not a url" })).toThrow(ConfigError);
    expect(() => loadConfig({ AMQP_URL: "amqp://a:5672/,not a url" })).toThrow(/AMQP_URL/);
  });
});
