/**
 * A `Retry-After` header as milliseconds to wait: delay-seconds or an HTTP date (RFC 9110
 * §10.2.3). Undefined when absent or unreadable, so the caller's own backoff applies. Fractional
 * seconds, which some servers send, are accepted.
 */
export function retryAfterMs(
  header: string | null | undefined,
  now = Date.now(),
): number | undefined {
  if (header === null || header === undefined || header.trim() === "") {
    return undefined;
  }
  const value = header.trim();
  if (/^\d+(\.\d+)?$/.test(value)) {
    return Math.round(Number(value) * 1000);
  }
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
