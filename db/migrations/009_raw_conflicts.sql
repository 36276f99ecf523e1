-- Schema version 9: TTN uplinks are identified by their body as well as by what they claim.
-- A TTN correlation id is derived from application, device, received_at, f_cnt AND the body's
-- bytes, so a retried body is stored once while a different body claiming the same uplink gets
-- a raw row of its own. uplink_key is what all bodies of one uplink share (NULL for every other
-- source and message); rows sharing it with different bodies are flagged conflicting, so the
-- store shows which data disagree instead of keeping only the first body.
ALTER TABLE raw_messages ADD COLUMN IF NOT EXISTS uplink_key uuid;
ALTER TABLE raw_messages ADD COLUMN IF NOT EXISTS conflicting boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS raw_messages_uplink_key_idx ON raw_messages (uplink_key)
    WHERE uplink_key IS NOT NULL;
