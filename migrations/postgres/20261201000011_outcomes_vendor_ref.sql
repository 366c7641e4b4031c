-- Alibaba DescribeVerifyResult looks up when a BizId / TicketId was first seen (its pending
-- window runs from there).
CREATE INDEX outcomes_vendor_ref ON outcomes (vendor, vendor_ref);
