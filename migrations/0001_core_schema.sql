-- Core schema: lists and recipients, suppressions, domains, campaigns, the
-- delivery queue, and the per-provider throttle state with its history.
-- PostgreSQL is the source of truth for every delivery's state.

CREATE TABLE lists (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per recipient domain: its provider (throttle key) and MX answer.
CREATE TABLE domains (
  domain      text PRIMARY KEY,               -- lower-case A-label, no trailing dot
  provider    text NOT NULL,                  -- gmail | outlook | yahoo | other:<key>
  mx_hosts    text[],                         -- NULL until checked
  mx_status   text CHECK (mx_status IN ('ok', 'a_fallback', 'null_mx', 'nxdomain', 'no_address', 'error')),
  checked_at  timestamptz,
  expires_at  timestamptz                     -- cached answer valid until (DNS TTL)
);

CREATE TABLE recipients (
  id          bigserial PRIMARY KEY,
  email       text NOT NULL,                  -- as delivered: local part case kept, domain normalised
  email_key   text NOT NULL UNIQUE,           -- comparison key: lower(email)
  domain      text NOT NULL,
  attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recipients_domain_idx ON recipients (domain);

CREATE TABLE list_members (
  list_id       bigint NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
  recipient_id  bigint NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
  added_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (list_id, recipient_id)
);
CREATE INDEX list_members_recipient_idx ON list_members (recipient_id);

-- Addresses that must never be sent to again. Wins over any later import.
CREATE TABLE suppressions (
  email_key    text PRIMARY KEY,              -- same key as recipients.email_key
  reason       text NOT NULL CHECK (reason IN ('unsubscribe', 'hard_bounce', 'complaint', 'manual')),
  source       text NOT NULL DEFAULT 'manual', -- cli, import, http, bounce, ...
  campaign_id  bigint,                        -- campaign that caused it, if any
  detail       text,                          -- e.g. the bounce reply
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL,
  list_id       bigint NOT NULL REFERENCES lists (id),
  from_header   text NOT NULL,
  reply_to      text,
  subject       text NOT NULL,
  text_body     text,
  html_body     text,
  status        text NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'waiting_window', 'finished', 'cancelled')),
  scheduled_at  timestamptz,                  -- --at; NULL: on `campaign start`
  window_start  time,                         -- daily send window in `timezone`, may cross midnight
  window_end    time,
  timezone      text NOT NULL DEFAULT 'UTC',
  audience_frozen_at timestamptz,             -- deliveries were created
  created_at    timestamptz NOT NULL DEFAULT now(),
  started_at    timestamptz,
  finished_at   timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_status_idx ON campaigns (status);

-- One row per campaign x recipient. States follow DESIGN.md:
-- queued -> sending(lease) -> sent | deferred -> queued ... | bounced | failed; skipped.
CREATE TABLE deliveries (
  id                bigserial PRIMARY KEY,
  campaign_id       bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
  recipient_id      bigint NOT NULL REFERENCES recipients (id),
  provider          text NOT NULL,
  state             text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'bounced', 'failed', 'skipped')),
  attempts          integer NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz NOT NULL DEFAULT now(),
  first_attempt_at  timestamptz,
  lease_owner       text,
  lease_expires_at  timestamptz,
  last_reply_code   integer,
  last_reply        text,
  last_signal       text,
  sent_at           timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (campaign_id, recipient_id)
);
-- Hot path 1: claim sendable deliveries per provider, oldest due first.
CREATE INDEX deliveries_claim_idx ON deliveries (provider, next_attempt_at)
  WHERE state IN ('queued', 'deferred');
-- Hot path 2: count a campaign's deliveries by state.
CREATE INDEX deliveries_campaign_state_idx ON deliveries (campaign_id, state);
-- Expired leases (a worker died) go back to the queue.
CREATE INDEX deliveries_lease_idx ON deliveries (lease_expires_at) WHERE state = 'sending';

-- The learned send rate per (provider, egress), so a restart resumes instead of bursting.
CREATE TABLE throttle_state (
  provider          text NOT NULL,
  egress            text NOT NULL,
  state             jsonb NOT NULL,           -- the controller's serialised state
  rate              double precision NOT NULL,
  connection_limit  integer NOT NULL,
  mode              text NOT NULL DEFAULT 'normal' CHECK (mode IN ('normal', 'backoff', 'suspended')),
  suspended_until   timestamptz,
  last_throttle_reply text,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, egress)
);

-- Rate and outcomes over time, for the dashboard's per-provider chart.
CREATE TABLE throttle_history (
  id         bigserial PRIMARY KEY,
  provider   text NOT NULL,
  egress     text NOT NULL,
  at         timestamptz NOT NULL DEFAULT now(),
  rate       double precision NOT NULL,
  accepted   integer NOT NULL DEFAULT 0,
  deferred   integer NOT NULL DEFAULT 0,
  mode       text NOT NULL DEFAULT 'normal'
);
CREATE INDEX throttle_history_provider_at_idx ON throttle_history (provider, at);
