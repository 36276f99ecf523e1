-- Schema version 10: login attempts reserved atomically per user and address, and tokens revoked
-- when an account's password or enabled state changes.
--
-- GET /token used to read a failure count, check the password and record a failure in three
-- steps, so concurrent guesses all got past the limit, and it counted failures per user name
-- from anywhere, so anyone could lock a user out. Now each attempt is reserved before the
-- password is checked, under the lock of its counter row (see src/api/credentials.ts): one row
-- per (user name, client address), and one per user name with client '' for a much higher
-- ceiling across addresses, which an address the user recently logged in from never meets.
-- A successful login gives its reservation back.

CREATE TABLE IF NOT EXISTS api_login_attempts (
    username text NOT NULL,
    -- The client address, or '' for the counter of the user name across every address.
    client text NOT NULL,
    -- Attempts reserved and not given back (failures) since window_started_at.
    failures integer NOT NULL DEFAULT 0,
    window_started_at timestamptz,
    -- Attempts are refused unchecked until then; each lock-out lasts twice the one before.
    blocked_until timestamptz,
    lockouts integer NOT NULL DEFAULT 0,
    -- Last successful login of this user from this address (pair rows only).
    succeeded_at timestamptz,
    touched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, client)
);
CREATE INDEX IF NOT EXISTS api_login_attempts_touched_idx ON api_login_attempts (touched_at);

-- The failure log of 004 is replaced by the counters above.
DROP TABLE IF EXISTS api_login_failures;

-- A new password, disabling and re-enabling each revoke every token of the user (a new
-- generation), whoever makes the change: the API, `broker users`, IoTa's tooling or psql. Before
-- this, an admin's password reset left the old tokens working, and re-enabling a user brought
-- back the tokens they had when disabled. When the same UPDATE also writes a plaintext token
-- (IoTa's change-password), users_hash_auth_token has already moved to a new generation and
-- stored that token under it, so the generation is not changed a second time.
CREATE OR REPLACE FUNCTION users_revoke_tokens() RETURNS trigger AS $$
BEGIN
    IF NEW.token_generation = OLD.token_generation THEN
        NEW.token_generation := gen_random_uuid();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS users_revoke_tokens_trigger ON users;
CREATE TRIGGER users_revoke_tokens_trigger
    BEFORE UPDATE OF password, valid ON users
    FOR EACH ROW
    WHEN (OLD.password IS DISTINCT FROM NEW.password OR OLD.valid IS DISTINCT FROM NEW.valid)
    EXECUTE FUNCTION users_revoke_tokens();
