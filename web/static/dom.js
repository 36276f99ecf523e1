// Small DOM helpers: elements are built, never parsed from strings, so data cannot become markup.

/** h("a", { href: "#/x", class: "c", onclick: fn }, "text", child…) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      el.append(child instanceof Node ? child : String(child));
    }
  }
  return el;
}

/**
 * True when a device has a location: the API writes a missing one as IoTa did,
 * `{"lat": null, "long": null}` (and accepts null as well).
 */
export function hasLocation(location) {
  return location != null && location.lat != null && location.long != null;
}

/** "lat, long" with 5 decimals (IoTa's form), or "". */
export function formatLocation(location) {
  return hasLocation(location) ? `${location.lat.toFixed(5)}, ${location.long.toFixed(5)}` : "";
}

/** An ISO instant as local "YYYY-MM-DD HH:MM:SS" in the browser's zone, or "". */
export function formatTime(iso) {
  if (!iso) {
    return "";
  }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) {
    return iso;
  }
  const p = (n) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
  );
}

/** "3 hours ago", as IoTa's map said it. */
export function ago(iso, now = Date.now()) {
  if (!iso) {
    return "never";
  }
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  for (const [unit, size] of [
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
  ]) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
    }
  }
  return `${seconds} second${seconds === 1 ? "" : "s"} ago`;
}

/** Parses IoTa's "lat, long" text: undefined when unparsable, null when empty. */
export function parseLocation(text) {
  const value = text.trim();
  if (value === "") {
    return null;
  }
  const match = /^(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)$/.exec(value);
  return match ? { lat: Number(match[1]), long: Number(match[2]) } : undefined;
}
