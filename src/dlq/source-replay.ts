import { z } from "zod";

import { parseSection, type Config } from "../core/config.js";
import { loadTtnSettings } from "../sources/ttn/settings.js";
import type { SourceLetter, SourceReplayer } from "./service.js";

/**
 * The ingest paths source dead letters are replayed through. A source's dead letter is the raw
 * body its front end could not take; replaying it means handing that body to the same front end
 * again, so everything the source does (raw store, decoders, device lookup, validation,
 * confirmed publish, and a fresh dead letter if it is still refused) happens exactly as for a
 * new arrival. Only front ends that can be handed a body are listed: see doc/operations.md.
 */

const schema = z.object({
  DLQ_TTN_WEBHOOK_URL: z.url().optional(),
  DLQ_REPLAY_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
});

/** Settings of the dead-letter tools. */
export interface DlqSettings {
  /** Where TTN dead letters are posted again. Default: this host's ttn-webhook uplink path. */
  readonly ttnWebhookUrl: string;
  /** Longest wait for one replayed body's answer, in ms. Default 10 000. */
  readonly replayTimeoutMs: number;
}

export function dlqSettings(config: Pick<Config, "env" | "ttnWebhook">): DlqSettings {
  const env = parseSection(config, schema, "DLQ");
  return {
    ttnWebhookUrl:
      env.DLQ_TTN_WEBHOOK_URL ?? `http://127.0.0.1:${config.ttnWebhook.port}/ttn/webhook/up`,
    replayTimeoutMs: env.DLQ_REPLAY_TIMEOUT_MS,
  };
}

export interface WebhookReplayOptions {
  readonly url: string;
  /** Request headers (the webhook's credentials). */
  readonly headers: () => Record<string, string>;
  /** Longest wait per request, in ms. */
  readonly timeoutMs: number;
  /** Requests in flight at once. Default 8. */
  readonly concurrency?: number;
}

/**
 * Posts each body to an HTTP front end. Done (true) when the answer says the outcome is
 * durable: 2xx (stored and published, confirmed) or 400/413 (refused again: the front end
 * stored it raw and dead-lettered it afresh, with today's reason, before answering). Anything
 * else (401, 5xx, no answer) leaves the dead letter where it is.
 */
export function webhookReplayer(options: WebhookReplayOptions): SourceReplayer {
  return async (letters: readonly SourceLetter[]) => {
    const done: boolean[] = new Array<boolean>(letters.length).fill(false);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < letters.length; i = next++) {
        try {
          const res = await fetch(options.url, {
            method: "POST",
            headers: { "content-type": "application/json", ...options.headers() },
            body: letters[i]!.body,
            signal: AbortSignal.timeout(options.timeoutMs),
          });
          await res.arrayBuffer();
          done[i] = res.ok || res.status === 400 || res.status === 413;
        } catch {
          done[i] = false;
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker));
    return done;
  };
}

/** The webhook's own credentials, as The Things Stack would send them. */
function ttnWebhookHeaders(config: Pick<Config, "env" | "production">): Record<string, string> {
  const { auth } = loadTtnSettings(config);
  const headers: Record<string, string> = {};
  if (auth.secret !== undefined) {
    headers[auth.secretHeader] = auth.secret;
  }
  if (auth.basic !== undefined) {
    const pair = `${auth.basic.user}:${auth.basic.password}`;
    headers.authorization = `Basic ${Buffer.from(pair, "utf8").toString("base64")}`;
  }
  return headers;
}

/** Every source whose dead letters can be replayed, by `sources.source_name`. */
export function sourceReplayers(
  config: Pick<Config, "env" | "production" | "ttnWebhook">,
): Map<string, SourceReplayer> {
  const settings = dlqSettings(config);
  return new Map([
    [
      "ttn",
      webhookReplayer({
        url: settings.ttnWebhookUrl,
        headers: () => ttnWebhookHeaders(config),
        timeoutMs: settings.replayTimeoutMs,
      }),
    ],
  ]);
}
