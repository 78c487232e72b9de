-- A leave by mail whose From could not be verified waits for the member's own
-- confirmation, the way a join does: a forged From must not remove anybody unseen.
ALTER TABLE joins ADD COLUMN kind TEXT NOT NULL DEFAULT 'join';  -- join | leave
