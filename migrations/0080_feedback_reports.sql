-- What came back after a send: one row per (report message, recipient) that
-- `mailer bounces ingest` (and later `mailer inbound`, IMAP polling) read.
-- The unique key makes applying a report idempotent: the same message read
-- twice inserts nothing the second time, so nothing is applied twice.
CREATE TABLE feedback_reports (
  id           bigserial PRIMARY KEY,
  message_key  text NOT NULL,     -- the report's Message-ID, else "sha256:" + hash of its bytes
  recipient    text NOT NULL,     -- the address the report names ('' when redacted)
  kind         text NOT NULL
               CHECK (kind IN ('hard', 'soft', 'complaint', 'auto_reply', 'delivered', 'unmatched')),
  reported_kind text NOT NULL,    -- what the report said, also for unmatched rows
  delivery_id  bigint REFERENCES deliveries (id) ON DELETE SET NULL,
  campaign_id  bigint REFERENCES campaigns (id) ON DELETE CASCADE,
  email_key    text,              -- the delivery's recipient (matched rows)
  status       text,
  diagnostic   text,
  received_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (message_key, recipient)
);
-- campaign show: feedback counts per kind.
CREATE INDEX feedback_reports_campaign_idx ON feedback_reports (campaign_id, kind);
-- soft_limit soft bounces within soft_window.
CREATE INDEX feedback_reports_soft_idx ON feedback_reports (email_key, received_at)
  WHERE kind = 'soft';

-- Why a campaign paused itself (the guard); NULL when an operator paused it.
ALTER TABLE campaigns ADD COLUMN pause_reason text;

-- A reason belongs to one pause: leaving `paused` (resume, cancel) clears it,
-- so a later pause by an operator never shows an old guard reason.
CREATE FUNCTION campaigns_clear_pause_reason() RETURNS trigger AS $$
BEGIN
  IF NEW.status <> 'paused' THEN
    NEW.pause_reason := NULL;
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER campaigns_clear_pause_reason BEFORE UPDATE OF status ON campaigns
  FOR EACH ROW EXECUTE FUNCTION campaigns_clear_pause_reason();
