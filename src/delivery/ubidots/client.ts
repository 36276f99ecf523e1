import { deadline } from "../../core/backoff.js";
import { retryAfterMs } from "../../core/retry-after.js";
import type { DeliveryReport } from "../writer.js";

/** A request budget shared by every copy of the writer (see db/repositories/rate-limits.ts). */
export interface SharedBudget {
  /** Resolves when this process may send one request (its slot has come). */
  take(signal?: AbortSignal): Promise<void>;
  /** Nobody sends for the next `ms` (the destination said so). */
  hold(ms: number): Promise<void>;
}

/** An HTTP answer, or why there was none. */
export type UbidotsAnswer =
  | {
      readonly kind: "answer";
      readonly status: number;
      readonly text: string;
      readonly retryAfterMs: number | undefined;
    }
  | { readonly kind: "failed"; readonly reason: "timeout" | "network"; readonly error: string };

export interface UbidotsClientOptions {
  readonly baseUrl: string;
  readonly token: string;
  readonly timeoutMs: number;
  readonly budget: SharedBudget;
  /** Tries of one request that Ubidots answers 429/420, the first included. Default 5. */
  readonly rateLimitedTries?: number;
}

/** Default pause after a 429/420 that names no Retry-After, in ms. */
const RATE_LIMITED_PAUSE_MS = 1_000;

/**
 * The Ubidots HTTP API under the token's shared budget: every request waits for its slot, a
 * 429/420 holds the budget for every copy (Retry-After, else 1 s) and the request is sent again
 * when its next slot comes, up to `rateLimitedTries` times. Errors are returned, never thrown.
 */
export class UbidotsClient {
  readonly #o: UbidotsClientOptions;

  constructor(options: UbidotsClientOptions) {
    this.#o = options;
  }

  async request(
    method: "GET" | "POST" | "PATCH",
    path: string,
    report: DeliveryReport,
    body?: string,
  ): Promise<UbidotsAnswer> {
    const tries = this.#o.rateLimitedTries ?? 5;
    let answer: UbidotsAnswer | undefined;
    for (let i = 0; i < tries; i++) {
      await this.#o.budget.take(report.signal);
      if (report.signal.aborted) {
        return { kind: "failed", reason: "network", error: "writer stopping" };
      }
      answer = await this.#once(method, path, report, body);
      if (answer.kind !== "answer" || (answer.status !== 429 && answer.status !== 420)) {
        return answer;
      }
      await this.#o.budget.hold(answer.retryAfterMs ?? RATE_LIMITED_PAUSE_MS);
    }
    return answer!;
  }

  async #once(
    method: string,
    path: string,
    report: DeliveryReport,
    body: string | undefined,
  ): Promise<UbidotsAnswer> {
    const started = performance.now();
    const seconds = (): number => (performance.now() - started) / 1000;
    const limit = deadline(this.#o.timeoutMs, report.signal);
    try {
      const res = await fetch(`${this.#o.baseUrl}${path}`, {
        method,
        headers: {
          "X-Auth-Token": this.#o.token,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body,
        signal: limit.signal,
      });
      const text = await res.text();
      report.request(String(res.status), seconds());
      return {
        kind: "answer",
        status: res.status,
        text,
        retryAfterMs: retryAfterMs(res.headers.get("retry-after")),
      };
    } catch (err) {
      const timeout =
        limit.signal.reason instanceof DOMException && limit.signal.reason.name === "TimeoutError";
      report.request(timeout ? "timeout" : "network", seconds());
      const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
      const detail = typeof cause?.code === "string" ? ` (${cause.code})` : "";
      return {
        kind: "failed",
        reason: timeout ? "timeout" : "network",
        error: `${method} ${path}: ${(err as Error).message}${detail}`,
      };
    } finally {
      limit.done();
    }
  }
}
