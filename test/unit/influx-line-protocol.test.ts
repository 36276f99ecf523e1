import { describe, expect, it } from "vitest";

import { parseInstant } from "../../src/core/time.js";
import { isoToNanoseconds, messageLines } from "../../src/delivery/influxdb/line-protocol.js";

describe("InfluxDB line protocol", () => {
  it("keeps microseconds in nanosecond timestamps", () => {
    expect(isoToNanoseconds("2024-05-01T00:00:00.123456+00:00", parseInstant)).toBe(
      1714521600123456000n,
    );
    expect(isoToNanoseconds("2024-05-01T10:00:00+10:00", parseInstant)).toBe(1714521600000000000n);
    expect(isoToNanoseconds("not a time", parseInstant)).toBeUndefined();
  });

  it("writes one line per timestamp, floats only, tags l_uid and p_uid, escaped names", () => {
    const { lines, skipped } = messageLines(
      {
        broker_correlation_id: "3a0b6a1e-2d1c-4b8e-9f3a-0c1d2e3f4a5b",
        p_uid: 7,
        l_uid: 3,
        timestamp: "2024-05-01T00:00:00Z",
        timeseries: [
          { name: "battery (v)", value: 4 },
          { name: "a,b=c", value: "2.5" },
          { name: "state", value: "on" },
          { name: "late", value: true, timestamp: "2024-05-01T00:00:01.5Z" },
        ],
      },
      "my device",
      parseInstant,
    );
    expect(lines).toEqual([
      "my\\ device,l_uid=3,p_uid=7 battery\\ (v)=4,a\\,b\\=c=2.5 1714521600000000000",
      "my\\ device,l_uid=3,p_uid=7 late=1 1714521601500000000",
    ]);
    expect(skipped).toBe(1);
  });
});
