import { describe, expect, it } from "vitest";

import { decodeJsonText, jsonbProblem, withoutWhitespace } from "../../src/sources/raw-copy.js";

describe("raw copy: whatever arrives is storable", () => {
  it("keeps parsed JSON alone when jsonb holds it exactly, and the text too when a number was rounded", () => {
    expect(decodeJsonText('{"a": 1.5}', "body")).toEqual({
      ok: true,
      value: { a: 1.5 },
      raw: { json: { a: 1.5 } },
    });
    const big = '{"n": 12345678901234567890}';
    const d = decodeJsonText(big, "body");
    expect(d.ok && d.raw).toEqual({ json: { n: 12345678901234567000 }, text: big });
  });

  it("keeps the text alone, naming the field, for U+0000 and lone surrogates in strings or keys", () => {
    const cases: [string, string, string][] = [
      ['{"a": {"b": "x\\u0000"}}', "nul_character", "a.b contains U+0000"],
      ['{"id": "\\ud800x"}', "lone_surrogate", "id contains a lone UTF-16 surrogate"],
      ['{"l": ["ok", "\\udfff"]}', "lone_surrogate", "l[1] contains"],
      ['{"o": {"\\udc00": 1}}', "lone_surrogate", "a key in o contains"],
      ['"\\ud800"', "lone_surrogate", "the body contains"],
    ];
    for (const [text, reason, error] of cases) {
      const d = decodeJsonText(text, "body");
      expect(d).toMatchObject({ ok: false, reason, raw: { text } });
      expect(d.ok ? "" : d.error).toContain(error);
    }
    // A pair is a character, not a problem.
    expect(decodeJsonText('{"e": "\\ud83d\\ude00"}', "body").ok).toBe(true);
    expect(jsonbProblem({ e: "\ud83d\ude00", f: "é" })).toBeUndefined();
  });

  it("says what is wrong without quoting the text", () => {
    const d = decodeJsonText("secret-looking {not json", "body");
    expect(d).toMatchObject({ ok: false, reason: "invalid_json", error: "body is not JSON" });
  });

  it("drops whitespace between tokens only", () => {
    expect(withoutWhitespace('{ "a b" : [ 1 , "\\" x" ] }\n')).toBe('{"a b":[1,"\\" x"]}');
  });
});
