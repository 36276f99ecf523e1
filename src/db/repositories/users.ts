import { sql, type Kysely } from "kysely";

import type { Database } from "../tables.js";
import { RegistryError, UNIQUE_VIOLATION, sqlState } from "./registry-error.js";

/**
 * API users (IoTa's `users` table) and their hashed tokens (`api_tokens`); see
 * db/migrations/004_auth.sql and 010_login_attempts.sql (a new password or a change of `valid`
 * revokes every token of the user). Only SQL lives here: hashing and the
 * rules of who may do what are in src/core/passwords.ts and src/api/.
 */

/** A user as the API and CLI show it (IoTa's User model without the token). */
export interface User {
  uid: number;
  username: string;
  valid: boolean;
  read_only: boolean;
}

/** A user with IoTa's stored password hash and salt, for checking a login. */
export interface UserCredentials {
  user: User;
  salt: string;
  passwordHash: string;
}

/** A live token row found by prefix: its hash still has to be compared by the caller. */
export interface TokenCandidate {
  tokenHash: string;
  user: User;
}

/** What users.auth_token holds once tokens are hashed (see the migration's trigger). */
export const AUTH_TOKEN_MARKER = "hashed: see api_tokens";

/** Tokens kept per user; issuing one more revokes the oldest. */
export const MAX_TOKENS_PER_USER = 100;

type Row = Record<string, unknown>;

function userFromRow(row: Row): User {
  return {
    uid: row.uid as number,
    username: row.username as string,
    valid: row.valid as boolean,
    read_only: row.read_only as boolean,
  };
}

const USER_COLUMNS = sql`u.uid, u.username, u.valid, u.read_only`;

/** Adds a user; a taken user name is a `conflict` RegistryError. */
export async function createUser(
  db: Kysely<Database>,
  input: {
    username: string;
    salt: string;
    passwordHash: string;
    valid: boolean;
    readOnly: boolean;
  },
): Promise<User> {
  try {
    const { rows } = await sql<Row>`
      insert into users as u (username, salt, password, auth_token, valid, read_only)
      values (${input.username}, ${input.salt}, ${input.passwordHash}, ${AUTH_TOKEN_MARKER},
              ${input.valid}, ${input.readOnly})
      returning ${USER_COLUMNS}`.execute(db);
    return userFromRow(rows[0] as Row);
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) {
      // The name is not quoted: error bodies never echo what the client sent.
      throw new RegistryError("conflict", "that user name is taken", { cause: err });
    }
    throw err;
  }
}

/** The user called `username`, or undefined. */
export async function getUser(db: Kysely<Database>, username: string): Promise<User | undefined> {
  const { rows } =
    await sql<Row>`select ${USER_COLUMNS} from users u where u.username = ${username}`.execute(db);
  return rows[0] && userFromRow(rows[0]);
}

/** The user called `username` with the stored password hash and salt, or undefined. */
export async function getUserCredentials(
  db: Kysely<Database>,
  username: string,
): Promise<UserCredentials | undefined> {
  const { rows } = await sql<Row>`
    select ${USER_COLUMNS}, u.salt, u.password from users u where u.username = ${username}`.execute(
    db,
  );
  const row = rows[0];
  return (
    row && {
      user: userFromRow(row),
      salt: row.salt as string,
      passwordHash: row.password as string,
    }
  );
}

/** Users in uid order (IoTa's `users ls` order), optionally one page of them. */
export async function listUsers(
  db: Kysely<Database>,
  page: { limit?: number; offset?: number } = {},
): Promise<User[]> {
  const { rows } = await sql<Row>`
    select ${USER_COLUMNS} from users u order by u.uid
    limit ${page.limit ?? null} offset ${page.offset ?? 0}`.execute(db);
  return rows.map(userFromRow);
}

/** Users who may log in and change things (valid, not read-only). */
export async function countAdmins(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from users where valid and not read_only`.execute(db);
  return rows[0]?.n ?? 0;
}

/** Removes a user and their tokens; false when there was no such user. */
export async function deleteUser(db: Kysely<Database>, username: string): Promise<boolean> {
  const { rows } = await sql<Row>`
    with gone as (delete from users where username = ${username} returning uid),
         tokens as (delete from api_tokens where user_uid in (select uid from gone))
    select uid from gone`.execute(db);
  return rows.length > 0;
}

/**
 * Sets `valid` and/or `read_only`; returns the user as stored, or undefined when absent. A change
 * of `valid` revokes the user's tokens (migration 010's trigger).
 */
export async function updateUserFlags(
  db: Kysely<Database>,
  username: string,
  flags: { valid?: boolean; readOnly?: boolean },
): Promise<User | undefined> {
  const { rows } = await sql<Row>`
    update users as u set valid = coalesce(${flags.valid ?? null}::boolean, u.valid),
                          read_only = coalesce(${flags.readOnly ?? null}::boolean, u.read_only)
    where u.username = ${username} returning ${USER_COLUMNS}`.execute(db);
  return rows[0] && userFromRow(rows[0]);
}

/**
 * Stores a new password hash and salt, which revokes the user's tokens (migration 010's
 * trigger); false when there is no such user.
 */
export async function setPassword(
  db: Kysely<Database>,
  uid: number,
  salt: string,
  passwordHash: string,
): Promise<boolean> {
  const result = await sql`
    update users set salt = ${salt}, password = ${passwordHash} where uid = ${uid}`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}

/** Invalidates every token of the user at once (a new generation); false when absent. */
export async function revokeTokens(db: Kysely<Database>, uid: number): Promise<boolean> {
  const result = await sql`
    update users set token_generation = gen_random_uuid() where uid = ${uid}`.execute(db);
  await sql`delete from api_tokens where user_uid = ${uid}`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}

/**
 * Records a token for the user under their current generation, and forgets the user's expired
 * and revoked tokens and all but the newest {@link MAX_TOKENS_PER_USER}. `ttlSeconds` undefined
 * means the token never expires. Returns false when there is no such user.
 */
export async function insertToken(
  db: Kysely<Database>,
  token: { userUid: number; prefix: string; tokenHash: string; ttlSeconds?: number },
): Promise<boolean> {
  const ttl = token.ttlSeconds ?? null;
  const { rows } = await sql<Row>`
    insert into api_tokens (user_uid, generation, prefix, token_hash, expires_at)
    select u.uid, u.token_generation, ${token.prefix}, ${token.tokenHash},
           now() + make_interval(secs => ${ttl}::float8)
    from users u where u.uid = ${token.userUid}
    returning user_uid`.execute(db);
  if (rows.length === 0) {
    return false;
  }
  await sql`
    delete from api_tokens t where t.user_uid = ${token.userUid} and (
      t.expires_at <= now()
      or t.generation <> (select token_generation from users where uid = ${token.userUid})
      or t.uid not in (select uid from api_tokens where user_uid = ${token.userUid}
                       order by issued_at desc, uid desc limit ${MAX_TOKENS_PER_USER}))`.execute(
    db,
  );
  return true;
}

/** Unexpired tokens of the current generation whose first characters are `prefix`. */
export async function findTokenCandidates(
  db: Kysely<Database>,
  prefix: string,
): Promise<TokenCandidate[]> {
  const { rows } = await sql<Row>`
    select t.token_hash, ${USER_COLUMNS}
    from api_tokens t join users u on u.uid = t.user_uid and u.token_generation = t.generation
    where t.prefix = ${prefix} and (t.expires_at is null or t.expires_at > now())`.execute(db);
  return rows.map((r) => ({ tokenHash: r.token_hash as string, user: userFromRow(r) }));
}

/** Forgets one token (a web sign-out); the user's other tokens stay valid. False when unknown. */
export async function deleteToken(
  db: Kysely<Database>,
  token: { prefix: string; tokenHash: string },
): Promise<boolean> {
  const result = await sql`
    delete from api_tokens
    where prefix = ${token.prefix} and token_hash = ${token.tokenHash}`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}
