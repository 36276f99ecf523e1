-- Schema version 4: API tokens stored as hashes, optional token expiry, failed-login tracking.
--
-- IoTa kept one plaintext token per user in users.auth_token. From here on a user may hold many
-- tokens (one per login, so two sessions of one user do not log each other out), each stored in
-- api_tokens as the SHA-256 of the token (hex) plus its first 12 characters to find the row.
-- IoTa's users columns stay as they were; auth_token keeps only a marker. Passwords keep IoTa's
-- scrypt scheme unchanged, so IoTa's users log in as before.
--
-- Nothing references users by foreign key (IoTa's tooling truncates it). Instead each user row
-- carries a random token_generation: a token is valid only while it was issued under the user's
-- current generation, so revoking all of a user's tokens is one update, and a user re-created
-- after a truncate never inherits the tokens of an earlier row that had the same uid.

ALTER TABLE users ADD COLUMN IF NOT EXISTS token_generation uuid NOT NULL DEFAULT gen_random_uuid();

CREATE TABLE IF NOT EXISTS api_tokens (
    uid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_uid integer NOT NULL,
    generation uuid NOT NULL,
    prefix text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    issued_at timestamptz NOT NULL DEFAULT now(),
    -- NULL: never expires (IoTa's tokens, and every token while TOKEN_TTL is unset).
    expires_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_tokens_prefix_idx ON api_tokens (prefix);
CREATE INDEX IF NOT EXISTS api_tokens_user_idx ON api_tokens (user_uid, issued_at);

-- Failed GET /token attempts, counted per user name and per client address over a window.
-- Successful logins are not recorded, so a healthy client may log in as often as it likes.
CREATE TABLE IF NOT EXISTS api_login_failures (
    uid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL,
    client text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS api_login_failures_username_idx ON api_login_failures (username, failed_at);
CREATE INDEX IF NOT EXISTS api_login_failures_client_idx ON api_login_failures (client, failed_at);
CREATE INDEX IF NOT EXISTS api_login_failures_failed_at_idx ON api_login_failures (failed_at);

-- A plaintext token written into users.auth_token (by this migration's data, or later by IoTa's
-- own tooling: broker-cli users add / token --refresh, the DAO's change-password) is moved into
-- api_tokens as a hash and replaced by the marker. Replacing an existing token revokes the
-- user's other tokens, as IoTa's single token did. The marker contains spaces, so it can never
-- be presented as a bearer token.
CREATE OR REPLACE FUNCTION users_hash_auth_token() RETURNS trigger AS $$
BEGIN
    IF NEW.auth_token = 'hashed: see api_tokens' THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.token_generation := gen_random_uuid();
    END IF;
    INSERT INTO api_tokens (user_uid, generation, prefix, token_hash)
    VALUES (NEW.uid, NEW.token_generation, left(NEW.auth_token, 12),
            encode(sha256(convert_to(NEW.auth_token, 'UTF8')), 'hex'))
    ON CONFLICT (token_hash) DO NOTHING;
    NEW.auth_token := 'hashed: see api_tokens';
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS users_hash_auth_token_trigger ON users;
CREATE TRIGGER users_hash_auth_token_trigger
    BEFORE INSERT OR UPDATE OF auth_token ON users
    FOR EACH ROW EXECUTE FUNCTION users_hash_auth_token();

-- IoTa's existing plaintext tokens: the trigger hashes each one (recorded under the user's new
-- generation, so it stays valid) and it never expires, as in IoTa.
UPDATE users SET auth_token = auth_token WHERE auth_token <> 'hashed: see api_tokens';
