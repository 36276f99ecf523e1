import { describe, expect, it } from "vitest";

import {
  lockoutSeconds,
  reserveAttempt,
  type AttemptCounter,
  type CounterPolicy,
} from "../../src/api/login-limits.js";

const policy: CounterPolicy = {
  maxFailures: 2,
  windowSeconds: 900,
  lockoutSeconds: 60,
  maxLockoutSeconds: 3600,
};
const fresh: AttemptCounter = {
  failures: 0,
  windowStartedAt: null,
  blockedUntil: null,
  lockouts: 0,
};

/** Reserves attempts at `now` until one is refused; returns that refusal. */
function untilRefused(counter: AttemptCounter, now: number) {
  let state = counter;
  for (;;) {
    const r = reserveAttempt(state, now, policy);
    if (!r.allowed) {
      return r;
    }
    state = r.next;
  }
}

describe("login attempt counters", () => {
  it("allow maxFailures attempts per window, then lock out for the first lock-out's length", () => {
    const first = reserveAttempt(fresh, 1000, policy);
    expect(first).toEqual({
      allowed: true,
      next: { failures: 1, windowStartedAt: 1000, blockedUntil: null, lockouts: 0 },
    });
    const refused = untilRefused(fresh, 1000);
    expect(refused.retryAfterSeconds).toBe(60);
    expect(refused.next).toMatchObject({ blockedUntil: 1060, lockouts: 1, failures: 0 });
    // While locked out, attempts are refused without lengthening the lock-out.
    const during = reserveAttempt(refused.next, 1030, policy);
    expect(during).toEqual({ allowed: false, retryAfterSeconds: 30, next: refused.next });
  });

  it("double each lock-out up to the longest, and forget them after a quiet window", () => {
    let state = fresh;
    const lengths: number[] = [];
    let now = 0;
    for (let i = 0; i < 8; i++) {
      const refused = untilRefused(state, now);
      lengths.push(refused.retryAfterSeconds);
      state = refused.next;
      now = state.blockedUntil!;
    }
    expect(lengths).toEqual([60, 120, 240, 480, 960, 1920, 3600, 3600]);
    const quiet = reserveAttempt(state, now + policy.windowSeconds, policy);
    expect(quiet.allowed && quiet.next.lockouts).toBe(0);
    expect(lockoutSeconds(policy, 1000)).toBe(3600);
  });

  it("start a new window when the old one has passed", () => {
    const used = { failures: 2, windowStartedAt: 0, blockedUntil: null, lockouts: 0 };
    expect(reserveAttempt(used, 899, policy).allowed).toBe(false);
    expect(reserveAttempt(used, 900, policy)).toEqual({
      allowed: true,
      next: { failures: 1, windowStartedAt: 900, blockedUntil: null, lockouts: 0 },
    });
  });
});
