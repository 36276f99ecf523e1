import { inspect } from "node:util";

import type { z } from "zod";

/** A setting that fails its schema; the message names each bad variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * The process environment, as components may read it: by section (a zod schema naming the
 * variables a component owns), one named variable, or the variables under one prefix. It never
 * hands the whole environment out, and it prints as a count of variables, so logging a config
 * (or a component's dependencies) cannot leak `UBIDOTS_API_TOKEN`, `PGPASSWORD` or anything else
 * the process was started with. Empty values count as unset, as in IoTa's `.env` files.
 */
export class Environment {
  readonly #vars: ReadonlyMap<string, string>;

  constructor(source: Readonly<Record<string, string | undefined>> = {}) {
    const vars = new Map<string, string>();
    for (const [name, value] of Object.entries(source)) {
      if (value !== undefined && value !== "") {
        vars.set(name, value);
      }
    }
    this.#vars = vars;
  }

  /**
   * The variables `schema` declares, validated; throws {@link ConfigError} naming each bad one.
   * `what` names the section in the message ("API", "web app", …).
   */
  section<T>(schema: z.ZodType<T>, what: string, namePrefix = ""): T {
    const parsed = schema.safeParse(Object.fromEntries(this.#vars));
    if (!parsed.success) {
      const problems = parsed.error.issues.map(
        (i) => `${namePrefix}${i.path.join(".")}: ${i.message}`,
      );
      throw new ConfigError(`invalid ${what} configuration: ${problems.join("; ")}`);
    }
    return parsed.data;
  }

  /** One variable, or undefined when it is unset or empty. */
  value(name: string): string | undefined {
    return this.#vars.get(name);
  }

  /**
   * The variables whose names start with `prefix`, keyed by the rest of their name (a source's
   * `YDOC_MQTT_URL` as `MQTT_URL` under `YDOC_`).
   */
  withPrefix(prefix: string): Record<string, string> {
    const found: Record<string, string> = {};
    for (const [name, value] of this.#vars) {
      if (name.startsWith(prefix)) {
        found[name.slice(prefix.length)] = value;
      }
    }
    return found;
  }

  toJSON(): string {
    return `[Environment: ${this.#vars.size} variables]`;
  }

  [inspect.custom](): string {
    return this.toJSON();
  }
}
