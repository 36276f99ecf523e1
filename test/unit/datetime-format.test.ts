import { describe, expect, it } from "vitest";

import { loadConfig } from "../../src/core/config.js";
import { pgTimestampToIso } from "../../src/core/datetime-format.js";
import { python310FromIsoformatAccepts } from "../helpers/python-iso.js";

describe("Python 3.10's fromisoformat grammar (the test's yardstick)", () => {
  it("accepts what Python 3.10 accepts and refuses what it refuses", () => {
    for (const ok of [
      "2022-05-06",
      "2022-05-06T10:30",
      "2022-05-06 10:30:00",
      "2022-05-06T10:30:00.500",
      "2022-05-06T10:30:00.500000+00:00",
      "2022-05-06T10:30:00+10:00",
      "1895-01-01T00:00:00+10:04:52",
    ]) {
      expect(python310FromIsoformatAccepts(ok), ok).toBe(true);
    }
    for (const bad of [
      "2022-05-06T10:30:00.5+00:00",
      "2022-05-06T10:30:00.19903+00:00",
      "2022-05-06T10:30:00.1234567+00:00",
      "2022-05-06T10:30:00Z",
      "2022-05-06T10:30:00+00",
      "2022-05-06T10:30:00+0000",
      "2022-02-30T10:30:00+00:00",
      "infinity",
    ]) {
      expect(python310FromIsoformatAccepts(bad), bad).toBe(false);
    }
  });
});

describe("pgTimestampToIso writes Python's isoformat", () => {
  const cases: [string, string][] = [
    ["2023-01-30 06:21:56.123456+00", "2023-01-30T06:21:56.123456+00:00"],
    ["2023-01-30 06:21:56.5+00", "2023-01-30T06:21:56.500000+00:00"],
    ["2023-01-30 06:21:56.19903+00", "2023-01-30T06:21:56.199030+00:00"],
    ["2023-01-30 06:21:56.1+00", "2023-01-30T06:21:56.100000+00:00"],
    ["2023-01-30 06:21:56.01+00", "2023-01-30T06:21:56.010000+00:00"],
    ["2023-01-30 06:21:56.000100+00", "2023-01-30T06:21:56.000100+00:00"],
    ["2023-01-30 06:21:56.000000+00", "2023-01-30T06:21:56+00:00"],
    ["2023-01-30 06:21:50+00", "2023-01-30T06:21:50+00:00"],
    ["2023-01-30 00:00:00+00", "2023-01-30T00:00:00+00:00"],
    ["2023-01-30 16:21:56.25+10", "2023-01-30T16:21:56.250000+10:00"],
    ["2023-01-30 11:51:56.3+05:30", "2023-01-30T11:51:56.300000+05:30"],
    ["2023-01-30 03:21:56-03", "2023-01-30T03:21:56-03:00"],
    ["1890-01-01 10:04:52+10:04:52", "1890-01-01T10:04:52+10:04:52"],
    ["0001-01-01 00:00:00+00", "0001-01-01T00:00:00+00:00"],
  ];
  it.each(cases)("%s → %s", (pg, iso) => {
    expect(pgTimestampToIso(pg)).toBe(iso);
    expect(python310FromIsoformatAccepts(iso)).toBe(true);
  });

  it("leaves values ISO-8601 cannot write unchanged", () => {
    expect(pgTimestampToIso("infinity")).toBe("infinity");
    expect(pgTimestampToIso("-infinity")).toBe("-infinity");
    expect(pgTimestampToIso("0044-03-15 12:00:00+00 BC")).toBe("0044-03-15 12:00:00+00 BC");
  });
});

describe("DISPLAY_TZ", () => {
  it("defaults to UTC and takes an IANA zone name; anything else is refused at start-up", () => {
    expect(loadConfig({}).pg.timeZone).toBe("UTC");
    expect(loadConfig({ DISPLAY_TZ: "Australia/Sydney" }).pg.timeZone).toBe("Australia/Sydney");
    for (const bad of ["Mars/Olympus", "UTC'; drop table x", "-c x"]) {
      expect(() => loadConfig({ DISPLAY_TZ: bad }), bad).toThrow(/DISPLAY_TZ/);
    }
  });
});
