import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";

/**
 * Password and API token hashing. Passwords keep IoTa's scheme so users created by IoTa keep
 * logging in: `password` = hex of scrypt(password UTF-8, salt = the ASCII bytes of the 128-char
 * hex salt string, N=2^14, r=8, p=1, 64 bytes). Tokens are 64 random bytes as 128 hex chars
 * (IoTa's shape); only their SHA-256 is stored, which is enough for a secret with 512 bits of
 * entropy (a slow hash protects guessable secrets, not random ones).
 */

const SCRYPT = { N: 2 ** 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_LENGTH = 64;

/** Characters of a token stored in clear to find its row (48 of its 512 bits). */
export const TOKEN_PREFIX_LENGTH = 12;

/** A new salt as IoTa makes it: 64 random bytes as 128 lowercase hex characters. */
export function newSalt(): string {
  return randomBytes(64).toString("hex");
}

/** IoTa's password hash: hex of scrypt(password, salt's ASCII bytes). */
export function hashPassword(password: string, salt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    scrypt(
      Buffer.from(password, "utf8"),
      Buffer.from(salt, "utf8"),
      KEY_LENGTH,
      SCRYPT,
      (err, key) => (err ? reject(err) : resolve(key.toString("hex"))),
    );
  });
}

/** True when both hex strings are equal, in time independent of where they differ. */
export function hexEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, "utf8");
  const right = Buffer.from(b, "utf8");
  return left.length === right.length && timingSafeEqual(left, right);
}

/** True when `password` hashes to `expected` with `salt`. */
export async function verifyPassword(
  password: string,
  salt: string,
  expected: string,
): Promise<boolean> {
  return hexEqual(await hashPassword(password, salt), expected.toLowerCase());
}

/** Salt and hash for a new password. */
export async function passwordRecord(password: string): Promise<{ salt: string; hash: string }> {
  const salt = newSalt();
  return { salt, hash: await hashPassword(password, salt) };
}

/** A new API token: 64 random bytes as 128 hex characters. */
export function newToken(): string {
  return randomBytes(64).toString("hex");
}

/** What is stored for a token: SHA-256 of its UTF-8 bytes, hex (the migration computes the same). */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** The clear part of a token used to find its row. */
export function tokenPrefix(token: string): string {
  return token.slice(0, TOKEN_PREFIX_LENGTH);
}
