// IoTa's web CSV export (/download-data): l_uid, ts, received_at, a column per variable, ts_local.

function field(value) {
  if (value === null || value === undefined) {
    return "";
  }
  let text = typeof value === "object" ? JSON.stringify(value) : String(value);
  // A spreadsheet must not run text as a formula (a number such as -3.2 is left alone).
  if (/^[=+\-@\t\r]/.test(text) && !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
    text = `'${text}`;
  }
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** An instant as "YYYY-MM-DD HH:MM:SS±hh:mm" in the browser's time zone. */
export function localTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) {
    return "";
  }
  const p = (n) => String(Math.abs(n)).padStart(2, "0");
  const offset = -d.getTimezoneOffset();
  const sign = offset < 0 ? "-" : "+";
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` +
    `${sign}${p(Math.floor(Math.abs(offset) / 60))}:${p(Math.abs(offset) % 60)}`
  );
}

/**
 * The CSV of messages as /messages returns them (with `received_at_utc`): one row per message,
 * sorted by (l_uid, ts), the variables in order of first appearance.
 */
export function messagesCsv(messages) {
  const names = [];
  const seen = new Set();
  for (const m of messages) {
    for (const point of Array.isArray(m.timeseries) ? m.timeseries : []) {
      if (point && typeof point.name === "string" && !seen.has(point.name)) {
        seen.add(point.name);
        names.push(point.name);
      }
    }
  }
  const sorted = [...messages].sort(
    (a, b) => (a.l_uid ?? 0) - (b.l_uid ?? 0) || Date.parse(a.timestamp) - Date.parse(b.timestamp),
  );
  const lines = [["l_uid", "ts", "received_at", ...names, "ts_local"].map(field).join(",")];
  for (const m of sorted) {
    const values = new Map();
    for (const point of Array.isArray(m.timeseries) ? m.timeseries : []) {
      if (point && typeof point.name === "string") {
        values.set(point.name, point.value);
      }
    }
    lines.push(
      [
        m.l_uid,
        m.timestamp,
        m.received_at_utc,
        ...names.map((n) => values.get(n)),
        localTime(m.timestamp),
      ]
        .map(field)
        .join(","),
    );
  }
  return lines.join("\r\n") + "\r\n";
}

/** A file name from a device name: only [A-Za-z0-9_-] kept (IoTa's rule). */
export function csvFileName(name) {
  return (name.replace(/[^A-Za-z0-9_-]/g, "") || "export") + ".csv";
}
