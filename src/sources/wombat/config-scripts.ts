import type { JsonObject } from "../../core/devices.js";

/**
 * The remote-configuration scripts a Wombat runs when it finds one retained on
 * `wombat/<serial_no>` (IoTa's web app sent these; a Wombat reads the topic when it wakes).
 * An empty script clears what is pending.
 */
export const WOMBAT_SCRIPTS = {
  logs: ["ftp login", "ftp upload log.txt", "ftp logout"].join("\n"),
  data: ["ftp login", "ftp upload data.json", "ftp logout"].join("\n"),
  ota: ["config ota 1", "config reboot"].join("\n"),
  clear: "",
} as const;

export type WombatAction = keyof typeof WOMBAT_SCRIPTS;

export const WOMBAT_ACTIONS = Object.keys(WOMBAT_SCRIPTS) as WombatAction[];

/** True when `name` can be one level of an MQTT topic (no wildcard, separator or NUL). */
export function isTopicLevel(name: string): boolean {
  return name !== "" && !["+", "#", "/", "\u0000"].some((c) => name.includes(c));
}

/** The serial number a Wombat's config topic is named by, or undefined when it has none. */
export function wombatSerial(sourceIds: JsonObject): string | undefined {
  const sn = sourceIds.serial_no;
  return typeof sn === "string" && isTopicLevel(sn) ? sn : undefined;
}

/** A source_ids field shown as text (`ccid`, `firmware`), or null. */
export function sourceIdText(sourceIds: JsonObject, key: string): string | null {
  const v = sourceIds[key];
  return typeof v === "string" || typeof v === "number" ? String(v) : null;
}
