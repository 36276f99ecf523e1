/**
 * Pure rules of one login-attempt counter (per user and address, or per user across addresses):
 * whether one more attempt may be checked, and how long a lock-out lasts. The caller holds the
 * counter's row lock, so two attempts never decide on the same state. Times are seconds since
 * the epoch, read from the database clock.
 */

/** The state of one counter as stored in api_login_attempts. */
export interface AttemptCounter {
  /** Attempts reserved and not given back since `windowStartedAt`. */
  readonly failures: number;
  readonly windowStartedAt: number | null;
  /** Attempts are refused unchecked until then. */
  readonly blockedUntil: number | null;
  /** Lock-outs in a row; each lasts twice as long as the one before. */
  readonly lockouts: number;
}

/** Limits of one kind of counter. */
export interface CounterPolicy {
  /** Attempts that may be checked within a window before a lock-out. */
  readonly maxFailures: number;
  /** Length of the window failures are counted over, in seconds. */
  readonly windowSeconds: number;
  /** Length of the first lock-out, in seconds; each further one doubles, up to `maxLockoutSeconds`. */
  readonly lockoutSeconds: number;
  /** Longest lock-out, in seconds. */
  readonly maxLockoutSeconds: number;
}

export type Reservation =
  | { readonly allowed: true; readonly next: AttemptCounter }
  | { readonly allowed: false; readonly retryAfterSeconds: number; readonly next: AttemptCounter };

/** Length of the lock-out after `lockouts` earlier ones, in seconds. */
export function lockoutSeconds(policy: CounterPolicy, lockouts: number): number {
  // 2^30 already exceeds any sensible cap; the exponent is bounded so the number stays finite.
  return Math.min(policy.maxLockoutSeconds, policy.lockoutSeconds * 2 ** Math.min(lockouts, 30));
}

/**
 * Reserves one attempt: allowed (counted as a failure until given back) or refused with the
 * seconds until the lock-out ends. The attempt past `maxFailures` starts a lock-out; a refused
 * attempt never lengthens the current one. A window with no lock-out for a whole window before
 * it forgets earlier lock-outs, so a user who mistyped yesterday starts from the shortest.
 */
export function reserveAttempt(
  counter: AttemptCounter,
  now: number,
  policy: CounterPolicy,
): Reservation {
  if (counter.blockedUntil !== null && counter.blockedUntil > now) {
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil(counter.blockedUntil - now)),
      next: counter,
    };
  }
  let { failures, windowStartedAt, lockouts } = counter;
  if (windowStartedAt === null || now - windowStartedAt >= policy.windowSeconds) {
    failures = 0;
    windowStartedAt = now;
    if (counter.blockedUntil === null || now - counter.blockedUntil >= policy.windowSeconds) {
      lockouts = 0;
    }
  }
  if (failures >= policy.maxFailures) {
    const seconds = lockoutSeconds(policy, lockouts);
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil(seconds)),
      next: {
        failures: 0,
        windowStartedAt: null,
        blockedUntil: now + seconds,
        lockouts: lockouts + 1,
      },
    };
  }
  return {
    allowed: true,
    next: { failures: failures + 1, windowStartedAt, blockedUntil: counter.blockedUntil, lockouts },
  };
}
