import { z } from "zod";

import { parseSection, type Config } from "../core/config.js";
import { trustProxySetting } from "../runtime/http.js";

/** The web app's own settings, read from `config.env` (see .env.example, "Web app"). */
export interface WebSettings {
  /** HTTP port of the web app (IoTa's). Default 5000; 0 picks a free port. */
  readonly port: number;
  /**
   * Where the web app reaches the REST API, without `/broker/api`. Default
   * `http://127.0.0.1:<API_PORT>` (the API on this host).
   */
  readonly apiUrl: string;
  /**
   * Map tiles, as a Leaflet URL template (`https://tiles.example/{z}/{x}/{y}.png`). Unset (the
   * default): the map shows its markers on a blank background.
   */
  readonly tileUrl: string | undefined;
  /** The Things Stack console, for device links. Default IoTa's: au1's console. */
  readonly ttnConsoleUrl: string;
  /** Attribution shown with the tiles. */
  readonly tileAttribution: string;
  /**
   * Session cookies marked `Secure`: `auto` (the default) when the request came over TLS or a
   * trusted proxy says `X-Forwarded-Proto: https`; `always`; `never`.
   */
  readonly secureCookies: "auto" | "always" | "never";
  /** Express's `trust proxy` for the web port (client address and scheme). Default `loopback`. */
  readonly trustProxy: string | number | boolean;
  /** Largest request body passed to the API, in bytes. Default 1 048 576 (1 MiB). */
  readonly maxBodyBytes: number;
}

const schema = z.object({
  WEB_PORT: z.coerce.number().int().min(0).max(65535).default(5000),
  API_PORT: z.coerce.number().int().min(0).max(65535).default(5687),
  WEB_API_URL: z.url({ protocol: /^https?$/ }).optional(),
  WEB_TILE_URL: z
    .string()
    .regex(/^(https?:\/\/|\/)[^\s"'<>]*$/, "an http(s) URL or a path starting with /")
    .optional(),
  WEB_TTN_CONSOLE_URL: z
    .url({ protocol: /^https?$/ })
    .default("https://au1.cloud.thethings.network/console"),
  WEB_TILE_ATTRIBUTION: z.string().max(500).default(""),
  WEB_SECURE_COOKIES: z.enum(["auto", "always", "never"]).default("auto"),
  WEB_TRUST_PROXY: z.string().default("loopback"),
  API_MAX_BODY: z.coerce.number().int().positive().default(1_048_576),
});

/** Validates the web app's variables; throws ConfigError naming each bad one. */
export function webSettings(config: Pick<Config, "env">): WebSettings {
  const env = parseSection(config, schema, "web app");
  return Object.freeze({
    port: env.WEB_PORT,
    apiUrl: (env.WEB_API_URL ?? `http://127.0.0.1:${env.API_PORT}`).replace(/\/+$/, ""),
    tileUrl: env.WEB_TILE_URL,
    tileAttribution: env.WEB_TILE_ATTRIBUTION,
    ttnConsoleUrl: env.WEB_TTN_CONSOLE_URL.replace(/\/+$/, ""),
    secureCookies: env.WEB_SECURE_COOKIES,
    trustProxy: trustProxySetting(env.WEB_TRUST_PROXY),
    maxBodyBytes: env.API_MAX_BODY,
  });
}
