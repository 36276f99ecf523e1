import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { z } from "zod";

import { ConfigError } from "../../core/config.js";

/**
 * The ICT allowlist and CSV layouts are configuration (config/ict-mqtt.json, path
 * `ICT_MQTT_CONFIG`), not code: adding a logger is an edit and a restart.
 */

/** One reading taken from a CSV row. */
export interface IctField {
  readonly name: string;
  /** CSV column; 0 is the timestamp. */
  readonly column: number;
  /** `float`: a decimal number; `milli`: an integer count of thousandths (mV → V). */
  readonly convert: "float" | "milli";
}

export type IctLayout = readonly IctField[];

export interface IctConfig {
  /** Allowed logger name → its layout, or null when it has none yet. */
  readonly devices: ReadonlyMap<string, IctLayout | null>;
}

const field = z.strictObject({
  name: z.string().min(1),
  column: z.number().int().min(1),
  convert: z.enum(["float", "milli"]),
});

const schema = z
  .object({
    devices: z.record(z.string().regex(/^[^/+#]+$/, "is not a topic level"), z.string().nullable()),
    layouts: z.record(z.string(), z.array(field).min(1)),
  })
  .superRefine((cfg, ctx) => {
    for (const [device, layout] of Object.entries(cfg.devices)) {
      if (layout !== null && !Object.hasOwn(cfg.layouts, layout)) {
        ctx.addIssue({ code: "custom", path: ["devices", device], message: `no layout ${layout}` });
      }
    }
    for (const [name, fields] of Object.entries(cfg.layouts)) {
      const names = fields.map((f) => f.name);
      if (new Set(names).size !== names.length) {
        ctx.addIssue({ code: "custom", path: ["layouts", name], message: "repeats a name" });
      }
    }
  });

/** Validates a parsed configuration; throws ConfigError naming each problem. */
export function parseIctConfig(value: unknown, where = "ICT MQTT configuration"): IctConfig {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (i) => `${i.path.join(".") || "(file)"}: ${i.message}`,
    );
    throw new ConfigError(`invalid ${where}: ${problems.join("; ")}`);
  }
  const { devices, layouts } = parsed.data;
  return {
    devices: new Map(
      Object.entries(devices).map(([name, layout]) => [
        name,
        layout === null ? null : layouts[layout]!,
      ]),
    ),
  };
}

/** config/ict-mqtt.json of this installation: found by walking up from this module. */
export function defaultIctConfigPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "config", "ict-mqtt.json");
    try {
      readFileSync(candidate);
      return candidate;
    } catch {
      dir = dirname(dir);
    }
  }
  return resolve("config", "ict-mqtt.json");
}

/** Reads and validates the file at `path` (relative to the working directory). */
export function loadIctConfig(path: string): IctConfig {
  const file = isAbsolute(path) ? path : resolve(path);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read ICT_MQTT_CONFIG ${file}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(`ICT_MQTT_CONFIG ${file} is not JSON: ${(err as Error).message}`);
  }
  return parseIctConfig(value, `ICT_MQTT_CONFIG ${file}`);
}
