import {
  hashPassword,
  hashToken,
  hexEqual,
  newSalt,
  newToken,
  passwordRecord,
  tokenPrefix,
  TOKEN_PREFIX_LENGTH,
  verifyPassword,
} from "../core/passwords.js";
import type { Db } from "../db/database.js";
import {
  ALL_ADDRESSES,
  forgetIdleLoginCounters,
  lockLoginCounter,
  releaseLoginAttempt,
  saveLoginCounter,
  type LoginCounterKey,
} from "../db/repositories/login-attempts.js";
import {
  createUser,
  findTokenCandidates,
  getUserCredentials,
  insertToken,
  revokeTokens,
  setPassword,
  type User,
} from "../db/repositories/users.js";
import { reserveAttempt, type CounterPolicy } from "./login-limits.js";

/**
 * The rules of API credentials, shared by the API and `broker users`: logins checked against
 * IoTa's scrypt hashes, failed logins limited, tokens issued and revoked, passwords changed.
 */

/** Limits on login attempts (see ApiSettings, which documents each). */
export interface LoginLimits {
  /** Per user name and client address. */
  maxFailures: number;
  /** Per user name across addresses, except addresses the user recently logged in from. */
  maxFailuresPerUser: number;
  windowSeconds: number;
  lockoutSeconds: number;
  maxLockoutSeconds: number;
  /** How long a successful login exempts its address from the per-user ceiling, in seconds. */
  trustedSeconds: number;
}

export type LoginResult =
  | { kind: "ok"; user: User; token: string }
  | { kind: "rejected" }
  | { kind: "disabled" }
  | { kind: "limited"; retryAfterSeconds: number };

/** A salt and hash to check unknown user names against, so they take as long as known ones. */
const DECOY = { salt: newSalt(), hash: "0".repeat(128) };

/**
 * Issues a new token for the user (their other tokens stay valid). `ttlSeconds` undefined: the
 * token never expires. Throws when the user does not exist.
 */
export async function issueToken(db: Db, user: User, ttlSeconds?: number): Promise<string> {
  const token = newToken();
  const stored = await insertToken(db, {
    userUid: user.uid,
    prefix: tokenPrefix(token),
    tokenHash: hashToken(token),
    ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
  });
  if (!stored) {
    throw new Error(`user ${user.username} no longer exists`);
  }
  return token;
}

/** Revokes every token of the user and issues one new token, atomically. */
export async function replaceTokens(db: Db, user: User, ttlSeconds?: number): Promise<string> {
  if (!db.isTransaction) {
    return db.transaction().execute((trx) => replaceTokens(trx, user, ttlSeconds));
  }
  await revokeTokens(db, user.uid);
  return issueToken(db, user, ttlSeconds);
}

function policy(limits: LoginLimits, maxFailures: number): CounterPolicy {
  return {
    maxFailures,
    windowSeconds: limits.windowSeconds,
    lockoutSeconds: limits.lockoutSeconds,
    maxLockoutSeconds: limits.maxLockoutSeconds,
  };
}

type Reserved =
  { kind: "reserved"; userWide: boolean } | { kind: "limited"; retryAfterSeconds: number };

/**
 * Reserves one attempt before the password is checked, in one transaction holding the counter
 * rows' locks: concurrent guesses queue here, so no more than the limit are ever checked. The
 * per-user counter is skipped for an address the user logged in from within `trustedSeconds`,
 * so guesses from elsewhere can never lock the user out of their usual address.
 */
async function reserveLogin(db: Db, key: LoginCounterKey, limits: LoginLimits): Promise<Reserved> {
  const inTransaction = async (trx: Db): Promise<Reserved> => {
    const pair = await lockLoginCounter(trx, key);
    const forPair = reserveAttempt(pair, pair.now, policy(limits, limits.maxFailures));
    if (!forPair.allowed) {
      await saveLoginCounter(trx, key, forPair.next);
      return { kind: "limited", retryAfterSeconds: forPair.retryAfterSeconds };
    }
    const trusted =
      pair.succeededAt !== null && pair.now - pair.succeededAt < limits.trustedSeconds;
    if (!trusted) {
      const userKey = { username: key.username, client: ALL_ADDRESSES };
      const user = await lockLoginCounter(trx, userKey);
      const forUser = reserveAttempt(user, user.now, policy(limits, limits.maxFailuresPerUser));
      await saveLoginCounter(trx, userKey, forUser.next);
      if (!forUser.allowed) {
        // The pair's reservation is not saved: this attempt was never checked.
        return { kind: "limited", retryAfterSeconds: forUser.retryAfterSeconds };
      }
    }
    await saveLoginCounter(trx, key, forPair.next);
    return { kind: "reserved", userWide: !trusted };
  };
  return db.isTransaction ? inTransaction(db) : db.transaction().execute(inTransaction);
}

/**
 * GET /token: checks a user name and password. Every attempt is reserved first (see
 * {@link reserveLogin}) and stays counted as a failure unless the password was right, in which
 * case it is given back: a healthy client may log in as often as it likes.
 */
export async function login(
  db: Db,
  attempt: { username: string; password: string; client: string },
  limits: LoginLimits,
  ttlSeconds?: number,
): Promise<LoginResult> {
  const key = { username: attempt.username, client: attempt.client };
  const reserved = await reserveLogin(db, key, limits);
  if (reserved.kind === "limited") {
    return reserved;
  }
  const found = await getUserCredentials(db, attempt.username);
  const matches = await verifyPassword(
    attempt.password,
    found?.salt ?? DECOY.salt,
    found?.passwordHash ?? DECOY.hash,
  );
  if (!found || !matches) {
    await forgetIdleLoginCounters(
      db,
      Math.max(limits.windowSeconds, limits.maxLockoutSeconds, limits.trustedSeconds),
    );
    return { kind: "rejected" };
  }
  // The right password: not a guess. Only an enabled user's address becomes trusted.
  await releaseLoginAttempt(db, key, found.user.valid);
  if (reserved.userWide) {
    await releaseLoginAttempt(db, { username: key.username, client: ALL_ADDRESSES }, false);
  }
  if (!found.user.valid) {
    return { kind: "disabled" };
  }
  return { kind: "ok", user: found.user, token: await issueToken(db, found.user, ttlSeconds) };
}

/** The valid user a bearer token belongs to, or undefined (unknown, expired, revoked, disabled). */
export async function userForToken(db: Db, token: string): Promise<User | undefined> {
  if (token.length < TOKEN_PREFIX_LENGTH) {
    return undefined;
  }
  const hash = hashToken(token);
  let owner: User | undefined;
  // Every candidate is compared, in constant time each, so timing says nothing about which matched.
  for (const candidate of await findTokenCandidates(db, tokenPrefix(token))) {
    if (hexEqual(candidate.tokenHash, hash)) {
      owner = candidate.user;
    }
  }
  return owner?.valid ? owner : undefined;
}

/** Adds a user with IoTa's password scheme; `readOnly` defaults to true, as in IoTa. */
export async function addUser(
  db: Db,
  input: { username: string; password: string; valid?: boolean; readOnly?: boolean },
): Promise<User> {
  const { salt, hash } = await passwordRecord(input.password);
  return createUser(db, {
    username: input.username,
    salt,
    passwordHash: hash,
    valid: input.valid ?? true,
    readOnly: input.readOnly ?? true,
  });
}

/**
 * Sets a new password (new salt), which revokes every token of the user (migration 010; IoTa
 * kept them). False when the user is gone.
 */
export async function changePassword(db: Db, user: User, password: string): Promise<boolean> {
  const salt = newSalt();
  return setPassword(db, user.uid, salt, await hashPassword(password, salt));
}

/**
 * POST /change-password: new password and, as IoTa, a new token; unlike IoTa every earlier token
 * of the user is revoked too (by the new password). Returns the new token.
 */
export async function changePasswordAndToken(
  db: Db,
  user: User,
  password: string,
  ttlSeconds?: number,
): Promise<string> {
  if (!db.isTransaction) {
    return db
      .transaction()
      .execute((trx) => changePasswordAndToken(trx, user, password, ttlSeconds));
  }
  await changePassword(db, user, password);
  return replaceTokens(db, user, ttlSeconds);
}
