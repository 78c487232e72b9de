-- subscription = "approval": a join request waits as a held item for a coordinator.
ALTER TABLE submissions ADD COLUMN join_id INTEGER REFERENCES joins(id);
