-- The length of the rejects file (--rejects) once the import's committed
-- chunks have written their rows, committed with each chunk. A process killed
-- after writing a chunk's rejects and before the chunk committed leaves that
-- chunk's rows in the file; the rerun redoes the chunk, so it first cuts the
-- file back to this length and no reject appears twice. NULL: no rejects file.
ALTER TABLE imports ADD COLUMN rejects_bytes bigint;
