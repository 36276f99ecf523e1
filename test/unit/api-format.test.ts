import { describe, expect, it } from "vitest";
import { z } from "zod";

import { basicCredentials, bearerToken } from "../../src/api/auth.js";
import { ApiError, toValidationIssues } from "../../src/api/errors.js";
import {
  CSV_HEADER,
  csvField,
  lastPeriodMs,
  messageCsv,
  messageJson,
} from "../../src/api/messages-format.js";
import { physicalDeviceInput } from "../../src/api/schemas/devices.js";
import { boolParam, instantParam, intParam } from "../../src/api/schemas/params.js";
import {
  hashPassword,
  hashToken,
  newToken,
  tokenPrefix,
  verifyPassword,
} from "../../src/core/passwords.js";
import { parseInstant } from "../../src/core/time.js";
import type { StoredMessage } from "../../src/db/repositories/messages.js";

/** 422 detail of an ApiError thrown by `fn`. */
function detailOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return (err as ApiError).detail;
  }
  throw new Error("did not throw");
}

describe("passwords and tokens", () => {
  it("hashes passwords exactly as IoTa (scrypt over the hex salt's ASCII bytes)", async () => {
    // Computed with Python's hashlib.scrypt(password, salt=salt.encode(), n=2**14, r=8, p=1, dklen=64).
    const salt = "0123456789abcdef".repeat(8);
    const expected =
      "0806cd478e39435ec782fd51dd45c2289c3ca2595ca092a643864d643db3065567f0377074ee7c0ec80be17590d1bd49f5e4a0fa81346d8e216c2589d5a04a00";
    expect(await hashPassword("päss:word", salt)).toBe(expected);
    expect(await verifyPassword("päss:word", salt, expected.toUpperCase())).toBe(true);
    expect(await verifyPassword("päss:wore", salt, expected)).toBe(false);
  });

  it("makes 128-hex-character tokens and stores their SHA-256", () => {
    const token = newToken();
    expect(token).toMatch(/^[0-9a-f]{128}$/);
    expect(tokenPrefix(token)).toBe(token.slice(0, 12));
    expect(hashToken("abc")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });
});

describe("authorization headers", () => {
  it("reads Basic credentials, splitting on the first colon", () => {
    const header = `Basic ${Buffer.from("alice:pa:ss:wörd").toString("base64")}`;
    expect(basicCredentials(header)).toEqual({ username: "alice", password: "pa:ss:wörd" });
    expect(basicCredentials(`basic ${Buffer.from("bob:").toString("base64")}`)).toEqual({
      username: "bob",
      password: "",
    });
  });

  it("refuses missing, garbled and colon-less Basic headers with 401", () => {
    for (const header of [undefined, "", "Bearer abc", "Basic", "Basic !!!"]) {
      expect(() => basicCredentials(header)).toThrow(ApiError);
    }
    const noColon = `Basic ${Buffer.from("alice").toString("base64")}`;
    expect(() => basicCredentials(noColon)).toThrow("Invalid authentication credentials");
  });

  it("reads Bearer tokens and names what is wrong with other headers", () => {
    expect(bearerToken("Bearer abc")).toBe("abc");
    expect(bearerToken("  bearer   abc  ")).toBe("abc");
    expect(() => bearerToken(undefined)).toThrow("Not authenticated");
    for (const header of ["Basic abc", "Bearer", "Bearer a b", "abc"]) {
      expect(() => bearerToken(header)).toThrow("expected 'Bearer <token>'");
    }
  });
});

describe("query parameters", () => {
  it("parses integers within PostgreSQL's integer range", () => {
    expect(intParam.parse(" 42 ")).toBe(42);
    expect(intParam.parse("-7")).toBe(-7);
    for (const bad of ["1.5", "abc", "", "2147483648", "99999999999999999999", "1e3"]) {
      expect(intParam.safeParse(bad).success).toBe(false);
    }
  });

  it("parses pydantic's boolean words, with a default", () => {
    const flag = z.object({ f: boolParam(true) });
    expect(flag.parse({}).f).toBe(true);
    for (const word of ["false", "False", "0", "no", "off", "f", "N"]) {
      expect(flag.parse({ f: word }).f).toBe(false);
    }
    expect(flag.parse({ f: "YES" }).f).toBe(true);
    expect(flag.safeParse({ f: "maybe" }).success).toBe(false);
  });

  it("accepts date-times with offsets, restoring a '+' that arrived as a space", () => {
    expect(instantParam.parse("2024-01-02T03:04:05.123456 10:00")).toBe(
      "2024-01-02T03:04:05.123456+10:00",
    );
    expect(instantParam.parse("2024-01-02T03:04:05Z")).toBe("2024-01-02T03:04:05Z");
    for (const bad of ["2024-02-30T00:00:00Z", "2024-01-02", "yesterday", "2024-13-01T00:00:00"]) {
      expect(instantParam.safeParse(bad).success, bad).toBe(false);
    }
  });

  it("reads a date-time without an offset in the server's time zone, as IoTa's database did", () => {
    const naive = instantParam.parse("2024-07-02T03:04:05.123456");
    expect(naive).toMatch(/^2024-07-02T03:04:05\.123456[+-]\d{2}:\d{2}$/);
    expect(parseInstant(naive)).toBe(new Date(2024, 6, 2, 3, 4, 5, 123).getTime());
  });
});

describe("validation errors", () => {
  it("are in FastAPI's shape, naming missing fields; unknown body fields are dropped", () => {
    const result = physicalDeviceInput.safeParse({ name: "x", colour: "red", properties: [] });
    expect(result.success).toBe(false);
    const issues = toValidationIssues("body", result.error!);
    expect(issues.some((i) => i.loc.includes("colour"))).toBe(false);
    const strict = z.strictObject({ a: z.number() }).safeParse({ a: 1, colour: "red" });
    expect(toValidationIssues("query", strict.error!)).toEqual([
      { loc: ["query", "colour"], msg: "extra fields not permitted", type: "value_error.extra" },
    ]);
    expect(issues).toContainEqual({
      loc: ["body", "source_name"],
      msg: "field required",
      type: "value_error.missing",
    });
    expect(issues.some((i) => i.loc.join(".") === "body.properties")).toBe(true);
  });

  it("refuse NUL characters, lone surrogates and very deep JSON before they reach PostgreSQL", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) {
      deep = { d: deep };
    }
    for (const body of [
      { name: "a\u0000b", source_name: "ttn" },
      { name: "a", source_name: "ttn", properties: { k: ["x\u0000"] } },
      { name: "a", source_name: "ttn", properties: deep },
      { name: "a\ud800b", source_name: "ttn" },
      { name: "a", source_name: "ttn", properties: { k: "x\udc00" } },
      { name: "a", source_name: "ttn", properties: { "\ud800": 1 } },
    ]) {
      expect(physicalDeviceInput.safeParse(body).success).toBe(false);
    }
  });
});

describe("IoTa's last parameter", () => {
  const now = Date.UTC(2024, 0, 1);
  it("converts h/d/w/m/y in any case, m = 4 weeks and y = 52 weeks", () => {
    expect(lastPeriodMs("2h", now)).toBe(2 * 3_600_000);
    expect(lastPeriodMs("1D", now)).toBe(86_400_000);
    expect(lastPeriodMs("1w", now)).toBe(7 * 86_400_000);
    expect(lastPeriodMs("1m", now)).toBe(28 * 86_400_000);
    expect(lastPeriodMs("1Y", now)).toBe(364 * 86_400_000);
  });

  it("answers IoTa's 422 messages, and refuses zero, negative and absurd periods", () => {
    const msg = (last: string) =>
      (detailOf(() => lastPeriodMs(last, now)) as { msg: string }[])[0]!.msg;
    expect(msg("xh")).toBe("the first part of last must be an integer");
    expect(msg("h")).toBe("the first part of last must be an integer");
    expect(msg("5x")).toBe("only h/d/w/m/y supported");
    expect(msg("0h")).toMatch(/greater than 0/);
    expect(msg("-3d")).toMatch(/greater than 0/);
    expect(msg("99999999y")).toMatch(/year 1/);
  });
});

describe("message output", () => {
  const row: StoredMessage = {
    uid: 1,
    tsUtc: "2023-01-30T06:21:56+00:00",
    receivedAtUtc: "2023-01-30T06:22:00+00:00",
    message: {
      broker_correlation_id: "83d04e6f-db16-4280-8337-53f11b2335c6",
      p_uid: 301,
      l_uid: 276,
      timestamp: "2023-01-30T06:21:56.123456Z",
      timeseries: [
        { name: "battery (v)", value: 4.16 },
        { name: 'note, "quoted"', value: "a\nb", timestamp: "2023-01-30T06:20:00Z" },
        { name: "flag", value: true },
      ],
    },
  };

  it("has IoTa's fields: ts_utc, received_at_utc when asked, then the message's keys", () => {
    expect({ ...messageJson(row, { includeReceivedAt: false, onlyTimestamp: false }) }).toEqual({
      ts_utc: row.tsUtc,
      ...row.message,
    });
    expect({ ...messageJson(row, { includeReceivedAt: true, onlyTimestamp: true }) }).toEqual({
      ts_utc: row.tsUtc,
      received_at_utc: row.receivedAtUtc,
    });
  });

  it("keeps a stored '__proto__' key as data", () => {
    const odd = { ...row, message: JSON.parse('{"__proto__": {"x": 1}, "p_uid": 1}') as never };
    const text = JSON.stringify(
      messageJson(odd, { includeReceivedAt: false, onlyTimestamp: false }),
    );
    expect(text).toContain('"__proto__":{"x":1}');
  });

  it("writes IoTa's exporter CSV: one line per point, quoted as Python's csv module", () => {
    expect(CSV_HEADER).toBe("l_uid,p_uid,msg_timestamp,timestamp,name,value\r\n");
    expect(messageCsv(row).split("\r\n")).toEqual([
      "276,301,2023-01-30T06:21:56.123456Z,2023-01-30T06:21:56.123456Z,battery (v),4.16",
      '276,301,2023-01-30T06:21:56.123456Z,2023-01-30T06:20:00Z,"note, ""quoted""","a\nb"',
      "276,301,2023-01-30T06:21:56.123456Z,2023-01-30T06:21:56.123456Z,flag,True",
      "",
    ]);
    expect(csvField(null)).toBe("");
    expect(csvField({ a: 1 })).toBe('"{""a"":1}"');
  });

  it("escapes CSV text a spreadsheet would read as a formula, never a number", () => {
    expect(csvField("=cmd|' /C calc'!A0")).toBe("'=cmd|' /C calc'!A0");
    expect(csvField("=1+2")).toBe("'=1+2");
    expect(csvField("+1+2")).toBe("'+1+2");
    expect(csvField("-1+2")).toBe("'-1+2");
    expect(csvField("@SUM(A1)")).toBe("'@SUM(A1)");
    expect(csvField("\t=1")).toBe("'\t=1");
    expect(csvField("\r=1")).toBe('"\'\r=1"');
    expect(csvField('=HYPERLINK("x")')).toBe('"\'=HYPERLINK(""x"")"');
    expect(csvField(-3.2)).toBe("-3.2");
    expect(csvField("-3.2")).toBe("-3.2");
    expect(csvField("+1e5")).toBe("+1e5");
    expect(csvField("a=b")).toBe("a=b");
    expect(csvField(["=x"])).toBe('"[""=x""]"');
  });
});
