-- Which import wrote a list's rows, not when. An import's merge must tell a
-- row it wrote itself in an earlier chunk of the same file (a repeat of the
-- address: a duplicate, the file's first row wins) from a row another import
-- wrote since this one started, concurrently or while this one was
-- interrupted (merged like any stored row, so the last writer's values
-- stay). Comparing times with the import's start could not tell them apart:
-- another import's rows were taken for this one's own and its values kept.
--
-- list_members.added_by_import: the import that added the membership.
-- recipients.updated_by_import: the import that last merged attributes into
-- the recipient (NULL until one does; a recipient an import adds is that
-- import's through its membership).
--
-- Nullable without a default, so adding them rewrites no row, and rows that
-- are older hold NULL: written by no import that can still resume. No
-- foreign keys (every membership would pay a check, see 0030); an id whose
-- import is gone matches no running import.
ALTER TABLE list_members ADD COLUMN added_by_import bigint;
ALTER TABLE recipients ADD COLUMN updated_by_import bigint;
