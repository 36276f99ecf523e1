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
  clearLoginFailures,
  countLoginFailures,
  createUser,
  findTokenCandidates,
  getUserCredentials,
  insertToken,
  recordLoginFailure,
  revokeTokens,
  setPassword,
  type User,
} from "../db/repositories/users.js";

/**
 * The rules of API credentials, shared by the API and `broker users`: logins checked against
 * IoTa's scrypt hashes, failed logins limited, tokens issued and revoked, passwords changed.
 */

/** Limits on failed logins (see ApiSettings). */
export interface LoginLimits {
  maxFailures: number;
  windowSeconds: number;
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

/**
 * GET /token: checks a user name and password. Failed attempts are counted per user name and
 * per client address; once either reaches the limit within the window, attempts are refused
 * without checking (429) until old failures leave the window. Success does not count.
 */
export async function login(
  db: Db,
  attempt: { username: string; password: string; client: string },
  limits: LoginLimits,
  ttlSeconds?: number,
): Promise<LoginResult> {
  const key = { username: attempt.username, client: attempt.client };
  const failures = await countLoginFailures(db, key, limits.windowSeconds);
  if (failures.byUser >= limits.maxFailures || failures.byClient >= limits.maxFailures) {
    return { kind: "limited", retryAfterSeconds: Math.max(1, failures.retryAfterSeconds) };
  }
  const found = await getUserCredentials(db, attempt.username);
  const matches = await verifyPassword(
    attempt.password,
    found?.salt ?? DECOY.salt,
    found?.passwordHash ?? DECOY.hash,
  );
  if (!found || !matches) {
    await recordLoginFailure(db, key, limits.windowSeconds);
    return { kind: "rejected" };
  }
  if (!found.user.valid) {
    return { kind: "disabled" };
  }
  await clearLoginFailures(db, key);
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

/** Sets a new password (new salt); tokens are left alone. False when the user is gone. */
export async function changePassword(db: Db, user: User, password: string): Promise<boolean> {
  const salt = newSalt();
  return setPassword(db, user.uid, salt, await hashPassword(password, salt));
}

/**
 * POST /change-password: new password and, as IoTa, a new token; unlike IoTa every earlier token
 * of the user is revoked too. Returns the new token.
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
