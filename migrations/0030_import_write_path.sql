-- Import write path: every imported row writes one recipient and one list
-- membership, and each index and row-level check on those tables is paid once
-- per row (a 1,000,000-row import spent most of its time there).
--
-- recipients_domain_idx: no query selects recipients by domain (the audience
-- freeze joins domains by hash, campaign queries go through list_members).
DROP INDEX IF EXISTS recipients_domain_idx;

-- list_members_recipient_idx served only the ON DELETE CASCADE of the foreign
-- key to recipients; nothing asks which lists hold a recipient.
DROP INDEX IF EXISTS list_members_recipient_idx;

-- The row-level foreign keys of list_members ran two RI queries per inserted
-- membership. Memberships are written only by set-based statements that take
-- the recipient ids from recipients in the same transaction (RETURNING of the
-- insert, or a lookup) and a list id checked at the start of the import, and
-- no part of mailer deletes recipients. What the keys also did, cascading
-- deletes, is kept by statement-level triggers (one set-based delete per
-- statement instead of one per row).
ALTER TABLE list_members DROP CONSTRAINT IF EXISTS list_members_list_id_fkey;
ALTER TABLE list_members DROP CONSTRAINT IF EXISTS list_members_recipient_id_fkey;

CREATE FUNCTION list_members_cascade_lists() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM list_members m USING gone g WHERE m.list_id = g.id;
  RETURN NULL;
END $$;
CREATE TRIGGER lists_delete_members AFTER DELETE ON lists
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION list_members_cascade_lists();

CREATE FUNCTION list_members_cascade_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM list_members m USING gone g WHERE m.recipient_id = g.id;
  RETURN NULL;
END $$;
CREATE TRIGGER recipients_delete_members AFTER DELETE ON recipients
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
  EXECUTE FUNCTION list_members_cascade_recipients();
