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
