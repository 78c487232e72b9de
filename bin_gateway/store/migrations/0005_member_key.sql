-- One member per address per list, whatever the letter case: "Jan@X.nl" and "jan@x.nl"
-- are one person (the config and the CLI compare addresses that way), and the index
-- also serves every "lower(email) = lower(?)" lookup, which scanned the whole list.
-- Rows that already differ only in case are merged into the oldest: its deliveries and
-- threads stay; the other's are moved over unless the oldest has one for that bulletin.

CREATE TEMP TABLE member_merge AS
    SELECT m.id AS old_id, k.keep AS new_id
    FROM members AS m
    JOIN (SELECT list_id, lower(email) AS email_key, min(id) AS keep
          FROM members GROUP BY list_id, lower(email) HAVING count(*) > 1) AS k
      ON m.list_id = k.list_id AND lower(m.email) = k.email_key AND m.id <> k.keep;

UPDATE OR IGNORE deliveries
    SET member_id = (SELECT new_id FROM member_merge WHERE old_id = deliveries.member_id)
    WHERE member_id IN (SELECT old_id FROM member_merge);
-- What is left clashes with the oldest's own copy of that bulletin: unsent ones go (as
-- when a member leaves), sent ones are kept as history without the member.
DELETE FROM deliveries
    WHERE state IN ('queued', 'sending') AND member_id IN (SELECT old_id FROM member_merge);
UPDATE deliveries SET member_id = NULL WHERE member_id IN (SELECT old_id FROM member_merge);

UPDATE OR IGNORE reply_threads
    SET member_id = (SELECT new_id FROM member_merge WHERE old_id = reply_threads.member_id)
    WHERE member_id IN (SELECT old_id FROM member_merge);

DELETE FROM members WHERE id IN (SELECT old_id FROM member_merge);
DROP TABLE member_merge;

CREATE UNIQUE INDEX members_key ON members (list_id, lower(email));
