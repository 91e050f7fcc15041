-- Cumulative reply counters per (provider, egress, signal), for /metrics:
-- accepted, throttle, suspend, recipient_tempfail, hard_bounce, ... Workers add
-- to them when they flush; they only grow (Prometheus counters).
CREATE TABLE reply_counters (
  provider    text NOT NULL,
  egress      text NOT NULL,
  signal      text NOT NULL,
  count       bigint NOT NULL DEFAULT 0,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, egress, signal)
);
