import { PermanentError } from "../../core/errors.js";

/**
 * The first record of a CSV text the way Python's `csv.reader(..., strict=True)` reads it
 * (comma, `"` quotes doubled inside quoted fields, `\r\n`, `\n` or `\r` ending a record).
 * Returns its fields and whatever follows it. Throws PermanentError `malformed_csv` where
 * Python's strict reader raises: text after a closing quote, or a quote never closed. Pure.
 */
export function firstCsvRecord(text: string): { fields: string[]; rest: string } {
  const fields: string[] = [];
  let field = "";
  let state: "start" | "plain" | "quoted" | "closed" = "start";
  let started = false;
  let i = 0;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (state === "quoted") {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          state = "closed";
        }
      } else {
        field += c;
      }
      continue;
    }
    if (c === "\r" || c === "\n") {
      break;
    }
    started = true;
    if (c === ",") {
      fields.push(field);
      field = "";
      state = "start";
    } else if (state === "closed") {
      throw new PermanentError("malformed_csv", `'"' expected after '"' at character ${i + 1}`);
    } else if (c === '"' && state === "start") {
      state = "quoted";
    } else {
      field += c;
      state = "plain";
    }
  }
  if (state === "quoted") {
    throw new PermanentError("malformed_csv", "unexpected end of data inside a quoted field");
  }
  if (started) {
    fields.push(field);
  }
  let rest = text.slice(i);
  rest = rest.startsWith("\r\n") ? rest.slice(2) : rest.slice(1);
  return { fields, rest };
}
