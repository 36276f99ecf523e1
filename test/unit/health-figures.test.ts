import { describe, expect, it } from "vitest";

import { counterRates, parseCounters, RateBase } from "../../src/api/health-figures.js";
import { operationsSettings } from "../../src/api/operations-settings.js";
import { isTopicLevel, wombatSerial } from "../../src/sources/wombat/config-scripts.js";
import { Environment } from "../../src/core/environment.js";

const METRICS = `# HELP broker_messages_in_total Messages received by a component
# TYPE broker_messages_in_total counter
broker_messages_in_total{component="mapper"} 120
broker_messages_in_total{component="ttn-webhook"} 7
broker_messages_out_total{component="mapper"} 118
broker_messages_dead_lettered_total{component="mapper",reason="unknown_device"} 1
broker_messages_dead_lettered_total{reason="invalid_message",component="mapper"} 1
broker_messages_retried_total{component="mapper"} 5
process_cpu_seconds_total 3.2
`;

describe("health figures", () => {
  it("sums the message counters per component, every reason together", () => {
    expect(parseCounters(METRICS)).toEqual({
      mapper: { in: 120, out: 118, dead_lettered: 2 },
      "ttn-webhook": { in: 7, out: 0, dead_lettered: 0 },
    });
    expect(parseCounters("")).toEqual({});
  });

  it("turns two readings into rates, reading a restarted counter as 0", () => {
    const before = { mapper: { in: 100, out: 100, dead_lettered: 5 } };
    const after = {
      mapper: { in: 150, out: 120, dead_lettered: 1 },
      api: { in: 10, out: 10, dead_lettered: 0 },
    };
    expect(counterRates(before, after, 10)).toEqual({
      mapper: { in: 5, out: 2, dead_lettered: 0 },
      api: { in: 1, out: 1, dead_lettered: 0 },
    });
  });

  it("measures rates over at least the minimum period however often it is asked", () => {
    const base = new RateBase<number>(10);
    expect(base.advance("q", 100, 1)).toBeUndefined();
    expect(base.advance("q", 100.5, 2)).toBeUndefined(); // under a second: no rate yet
    expect(base.advance("q", 103, 3)).toEqual({ value: 1, seconds: 3 }); // the oldest kept
    // The newest reading at least 10 s old: 100.5, then 103.
    expect(base.advance("q", 111, 4)).toEqual({ value: 2, seconds: 10.5 });
    expect(base.advance("q", 113, 5)).toEqual({ value: 3, seconds: 10 });
    expect(base.advance("other", 113, 9)).toBeUndefined();
  });
});

describe("operations settings", () => {
  const config = (env: Record<string, string>) => ({
    env: new Environment(env),
    metricsPort: 9464,
  });

  it("defaults the health targets to this host's ops port", () => {
    expect(operationsSettings(config({}))).toEqual({
      healthTargets: ["http://127.0.0.1:9464"],
      healthTimeoutMs: 2000,
      wombatConfigTopic: "wombat",
    });
    expect(
      operationsSettings(
        config({ WEB_HEALTH_TARGETS: " http://a:9464 , https://b:1/ ", WOMBAT_CONFIG_TOPIC: "x/" }),
      ),
    ).toMatchObject({ healthTargets: ["http://a:9464", "https://b:1/"], wombatConfigTopic: "x" });
  });

  it("refuses what is not a list of http URLs, or a topic with wildcards", () => {
    expect(() => operationsSettings(config({ WEB_HEALTH_TARGETS: "ftp://a" }))).toThrow(
      /WEB_HEALTH_TARGETS/,
    );
    expect(() => operationsSettings(config({ WOMBAT_CONFIG_TOPIC: "wombat/#" }))).toThrow(
      /WOMBAT_CONFIG_TOPIC/,
    );
  });
});

describe("Wombat config topics", () => {
  it("takes a serial number only when it can be one topic level", () => {
    expect(wombatSerial({ serial_no: "29E0" })).toBe("29E0");
    for (const bad of ["", "a/b", "a+", "#", "a\u0000b", 12, undefined]) {
      expect(wombatSerial({ serial_no: bad as string })).toBeUndefined();
    }
    expect(isTopicLevel("SN-1")).toBe(true);
  });
});
