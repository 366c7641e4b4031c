-- Recovering a lost answer by asking the vendor: the reference a call is about (Alibaba
-- TicketId/BizId, Baidu verify_token) is written with the ledger row *before* the call goes
-- out, so a worker killed mid-call leaves what a later delivery needs to ask the vendor.
ALTER TABLE vendor_calls ADD COLUMN reference TEXT;
-- A job that gave up owes a copy to the dead-letter queue: the reason is recorded with its
-- outcome (same transaction) and cleared once the broker confirmed the copy, so a later
-- delivery that finds the outcome settles a copy still owed instead of acking it away.
-- Keep in step with ../sqlite/.
ALTER TABLE outcomes ADD COLUMN dead_letter_owed TEXT;
