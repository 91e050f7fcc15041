-- A claim writes only a delivery's lease (owner, expiry); its state changes
-- once, at the outcome. "sending" is no longer stored: a queued or deferred
-- delivery whose lease has not expired is in flight, and one whose lease
-- expired is claimable again as it stands (its worker died or hung).
--
-- Why: with the lease columns outside every index, a claim is a heap-only
-- (HOT) update that touches no index, where it used to add an entry to four.
-- The free space each page keeps (fillfactor) is where those in-place lease
-- versions go; a claim takes a page's rows together, so half the page is kept
-- free. Existing rows keep their layout until rewritten.
UPDATE deliveries SET state = CASE WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END
  WHERE state = 'sending';
DROP INDEX deliveries_lease_idx;
ALTER TABLE deliveries SET (fillfactor = 50);

-- Counting a campaign's deliveries by state reads the rows anyway now (the
-- lease decides "sending"), so an index of (campaign, state) no longer saves
-- that read, while every outcome paid an entry in it: low-cardinality keys
-- that cost deduplication and bottom-up deletion passes. What needs an index
-- by campaign is finding its open deliveries (is it finished? cancel the
-- rest): those rows only.
DROP INDEX deliveries_campaign_state_idx;
CREATE INDEX deliveries_campaign_open_idx ON deliveries (campaign_id)
  WHERE state IN ('queued', 'deferred');
