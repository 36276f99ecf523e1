import { describe, expect, it } from "vitest";

import {
  assumeServerZone,
  readDateTimeInput,
  unixTimeToIso,
} from "../../src/core/datetime-input.js";
import { newLogicalDeviceSchema } from "../../src/core/devices.js";

describe("datetimes given by users (pydantic v1's forms)", () => {
  it("keeps ISO-8601 with an offset as given", () => {
    expect(readDateTimeInput("2022-05-06T10:30:00.5+10:00")).toBe("2022-05-06T10:30:00.5+10:00");
    expect(readDateTimeInput("2022-05-06T10:30:00Z")).toBe("2022-05-06T10:30:00Z");
  });

  it("reads a time without an offset in the server's zone, one rule for API and CLI", () => {
    for (const naive of ["2022-05-06T10:30:00", "2022-05-06 10:30", "2022-05-06T10:30:00.250"]) {
      expect(readDateTimeInput(naive)).toBe(assumeServerZone(naive));
      expect(readDateTimeInput(naive)).toMatch(/[+-]\d{2}:\d{2}$/);
    }
  });

  it("reads Unix times in seconds, or milliseconds above 2e10, as UTC", () => {
    expect(unixTimeToIso(1651833000)).toBe("2022-05-06T10:30:00+00:00");
    expect(unixTimeToIso(1651833000.5)).toBe("2022-05-06T10:30:00.500000+00:00");
    expect(unixTimeToIso(1651833000123)).toBe("2022-05-06T10:30:00.123000+00:00");
    // 2e10 itself is still seconds (the year 2603), as pydantic.
    expect(unixTimeToIso(2e10)).toBe("2603-10-11T11:33:20+00:00");
    expect(unixTimeToIso(0)).toBe("1970-01-01T00:00:00+00:00");
    expect(unixTimeToIso(-1.5)).toBe("1969-12-31T23:59:58.500000+00:00");
    expect(readDateTimeInput("1651833000")).toBe("2022-05-06T10:30:00+00:00");
    expect(readDateTimeInput(1651833000)).toBe("2022-05-06T10:30:00+00:00");
  });

  it("refuses what is not a datetime", () => {
    for (const bad of ["yesterday", "2022-02-30T10:00:00Z", "", "1e999", "2022-05-06"]) {
      expect(readDateTimeInput(bad), bad).toBeUndefined();
    }
    expect(readDateTimeInput(Number.NaN)).toBeUndefined();
    expect(readDateTimeInput(1e300)).toBeUndefined();
  });

  it("is what a device's last_seen accepts", () => {
    const parsed = newLogicalDeviceSchema.parse({ name: "n", last_seen: 1651833000123 });
    expect(parsed.last_seen).toBe("2022-05-06T10:30:00.123000+00:00");
    expect(newLogicalDeviceSchema.safeParse({ name: "n", last_seen: "soon" }).success).toBe(false);
    expect(newLogicalDeviceSchema.safeParse({ name: "n", last_seen: true }).success).toBe(false);
  });
});
