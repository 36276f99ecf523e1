import type { Random } from "./random.js";

/**
 * A small structure-aware mutator for the fuzz test: it takes a recorded payload apart as JSON
 * and changes it where parsers and the database are touchy (timestamps, identifiers, numbers,
 * Unicode, key names, nesting), then sometimes damages the text itself. Written here rather than
 * taken from a library: what matters is knowing our inputs' shape and our storage's edges, which
 * a generic fuzzer does not, and a few dozen lines keep the cases readable and reproducible.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Timestamps on both sides of our grammar and of PostgreSQL's. */
export const TIMESTAMPS = [
  "2024-05-01T10:00:00Z",
  "2024-05-01T10:00:00.123456789+10:00",
  "2024-05-01T10:00:00+16:00",
  "2024-05-01T10:00:00+99:99",
  "2024-05-01T10:00:00-15:59",
  "2024-05-01T10:00:00,5Z",
  "2024-05-01T10:00:00",
  "2024-02-30T10:00:00Z",
  "0000-01-01T00:00:00Z",
  "0001-01-01T05:00:00+10:00",
  "2999-01-01T00:00:00Z",
  "9000-06-01T00:00:00.123457Z",
  "9999-12-31T23:59:59.999999999Z",
  "1970-01-01T00:00:00Z",
  "2024-05-01",
  "yesterday",
  "",
];

const STRINGS = [
  "\ud800x",
  "x\udfff",
  "\ud83d\ude00",
  "nul \u0000 inside",
  "é ü 中文",
  "x".repeat(3000),
  "'; drop table raw_messages; --",
  "0000000000000000",
  "-",
  " ",
  "__proto__",
];

const NUMBERS = [0, -0, 1, -1, 0.1, 1e21, 1e308, -1e308, 2 ** 53 + 2, 4294967296, 3.6, 255];

const KEYS = [
  "__proto__",
  "constructor",
  "",
  "$ts",
  "$TS",
  "l_uid",
  "p_uid",
  "timeseries",
  "\ud800",
];

function interesting(r: Random): Json {
  switch (r.int(7)) {
    case 0:
      return r.pick(TIMESTAMPS);
    case 1:
      return r.pick(STRINGS);
    case 2:
      return r.pick(NUMBERS);
    case 3:
      return r.pick([null, true, false]);
    case 4:
      return r.pick<Json>([[], {}, [1, "a", null], { a: { b: [] } }]);
    case 5:
      return r.digits(1 + r.int(14));
    default: {
      const depth = 20 + r.int(100); // past MAX_JSON_DEPTH once nested in the payload
      return JSON.parse("[".repeat(depth) + "]".repeat(depth)) as Json;
    }
  }
}

interface Slot {
  readonly parent: Json[] | { [key: string]: Json };
  readonly key: string | number;
}

/** Every place in the value that holds something, depth first. */
function slots(value: Json, out: Slot[] = []): Slot[] {
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      out.push({ parent: value, key: i });
      slots(item, out);
    });
  } else if (typeof value === "object" && value !== null) {
    for (const key of Object.keys(value)) {
      out.push({ parent: value, key });
      slots(value[key]!, out);
    }
  }
  return out;
}

function get(slot: Slot): Json {
  return (slot.parent as Record<string | number, Json>)[slot.key]!;
}

function set(slot: Slot, v: Json): void {
  // defineProperty, not assignment: a "__proto__" key must become a key, as JSON.parse makes it.
  Object.defineProperty(slot.parent, slot.key, {
    value: v,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

function mutateValue(root: Json, r: Random): Json {
  const all = slots(root);
  if (all.length === 0) {
    return interesting(r);
  }
  const slot = r.pick(all);
  const current = get(slot);
  switch (r.int(6)) {
    case 0:
    case 1:
      set(slot, interesting(r));
      break;
    case 2:
      if (Array.isArray(slot.parent)) {
        slot.parent.splice(slot.key as number, 1);
      } else {
        delete slot.parent[slot.key as string];
      }
      break;
    case 3:
      if (!Array.isArray(slot.parent)) {
        delete slot.parent[slot.key as string];
        set({ parent: slot.parent, key: r.pick(KEYS) }, current);
      }
      break;
    case 4:
      // change the type, keeping the content
      set(
        slot,
        typeof current === "string"
          ? Number(current) || current.length
          : typeof current === "number"
            ? String(current)
            : [current],
      );
      break;
    default:
      if (typeof current === "object" && current !== null && !Array.isArray(current)) {
        set({ parent: current, key: r.pick(KEYS) }, interesting(r));
      } else {
        set(slot, { value: current });
      }
  }
  return root;
}

function mutateText(text: string, r: Random): string {
  switch (r.int(5)) {
    case 0:
      return text.slice(0, r.int(text.length));
    case 1: {
      const at = r.int(text.length);
      return (
        text.slice(0, at) + r.pick(["{", "]", '"', "\\", ",", "\u0000", "\ufeff"]) + text.slice(at)
      );
    }
    case 2:
      // a number JSON.parse rounds
      return text.replace(/(?<=[:[,]\s*)-?\d+(\.\d+)?(?=\s*[,\]}])/, "12345678901234567890");
    case 3:
      return `[${text}]`;
    default:
      return text.replace(/"(\d{4}-\d{2}-\d{2}T[^"]*)"/, () => JSON.stringify(r.pick(TIMESTAMPS)));
  }
}

/**
 * One mutant of a JSON payload: 1-3 structural mutations, then a text-level one in one case of
 * five. The original is never changed.
 */
export function mutateJson(original: unknown, r: Random): string {
  let value = JSON.parse(JSON.stringify(original)) as Json;
  const times = 1 + r.int(3);
  for (let i = 0; i < times; i++) {
    value = mutateValue(value, r);
  }
  const text = JSON.stringify(value);
  return r.chance(0.2) ? mutateText(text, r) : text;
}

/** One mutant of a CSV row: fields replaced, dropped, quoted, added, or records appended. */
export function mutateCsv(row: string, r: Random): string {
  const fields = row.trimEnd().split(",");
  const times = 1 + r.int(3);
  for (let i = 0; i < times; i++) {
    const at = r.int(fields.length);
    switch (r.int(6)) {
      case 0:
        fields[0] = r.pick(TIMESTAMPS).replace("T", r.pick(["T", " "]));
        break;
      case 1:
        fields[at] = r.pick([
          "nan",
          "inf",
          "-inf",
          "",
          "1e400",
          "12345678901234567890",
          "x",
          '"4"1',
        ]);
        break;
      case 2:
        fields.splice(at, 1);
        break;
      case 3:
        fields[at] = `"${fields[at]}"`;
        break;
      case 4:
        fields.push(r.digits(3));
        break;
      default:
        return `${fields.join(",")}\n${row}`;
    }
  }
  return fields.join(",");
}
