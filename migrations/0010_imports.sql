-- CSV imports into lists. Each import commits its progress with every chunk
-- of rows (in the same transaction as the rows themselves), so an import that
-- was interrupted resumes at the first uncommitted row when run again on the
-- same file, and its final counts cover the whole file.
CREATE TABLE imports (
  id             bigserial PRIMARY KEY,
  list_id        bigint NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
  file_path      text NOT NULL,                 -- as given on the command line
  file_identity  text NOT NULL,                 -- size, mtime and a hash of the first bytes
  status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
  next_offset    bigint NOT NULL,               -- byte offset of the first uncommitted row
  next_line      bigint NOT NULL,               -- its physical line number
  counts         jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the summary so far (import --json shape)
  started_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz
);
CREATE INDEX imports_resume_idx ON imports (list_id, file_identity) WHERE status = 'running';
