/** Capped exponential backoff with full jitter. */
export interface BackoffOptions {
  /** First delay in milliseconds. Default 200. */
  initialMs?: number;
  /** Upper bound of any delay in milliseconds. Default 30 000. */
  maxMs?: number;
  /** Growth factor per attempt. Default 2. */
  factor?: number;
}

/**
 * Delay before retry number `attempt` (0-based): a random value in [base/2, base], where
 * base = min(maxMs, initialMs * factor^attempt). Half-jitter keeps retries spread out while
 * never retrying almost immediately after a long outage.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 200;
  const max = options.maxMs ?? 30_000;
  const factor = options.factor ?? 2;
  const base = Math.min(max, initial * Math.pow(factor, Math.max(0, attempt)));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/** Resolves after `ms`, or early (without rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * A signal that aborts after `ms` or when `parent` aborts; call `done()` when the work ended.
 * (Not `AbortSignal.any([AbortSignal.timeout(ms), parent])`: on Node 20 the timeout signal in
 * it can be collected and never fire, leaving a request without a timeout.)
 */
export function deadline(ms: number, parent?: AbortSignal): { signal: AbortSignal; done(): void } {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(parent?.reason);
  const timer = setTimeout(
    () => controller.abort(new DOMException("The operation timed out", "TimeoutError")),
    ms,
  );
  parent?.addEventListener("abort", onAbort, { once: true });
  if (parent?.aborted) {
    onAbort();
  }
  return {
    signal: controller.signal,
    done() {
      clearTimeout(timer);
      parent?.removeEventListener("abort", onAbort);
    },
  };
}
