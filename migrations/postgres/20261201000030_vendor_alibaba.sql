-- Alibaba Cloud gets one name across the code, the operations and the quota keys: rows
-- written as `aliyun` before the rename are moved to `alibaba`, so that reports, billing
-- counters, the ledger and the shared rate-limit state carry on under one key. Job ids are
-- not touched (they are derived from the frozen old operation names, see
-- `Operation::identity_name`). Keep in step with ../sqlite/.
UPDATE jobs SET vendor = 'alibaba' WHERE vendor = 'aliyun';
UPDATE jobs SET operation = 'alibaba.' || substr(operation, 8) WHERE operation LIKE 'aliyun.%';
UPDATE outcomes SET vendor = 'alibaba' WHERE vendor = 'aliyun';
UPDATE outcomes SET operation = 'alibaba.' || substr(operation, 8) WHERE operation LIKE 'aliyun.%';
UPDATE vendor_calls SET vendor = 'alibaba' WHERE vendor = 'aliyun';
UPDATE billing_counters SET vendor = 'alibaba' WHERE vendor = 'aliyun';
UPDATE vendor_charges SET vendor = 'alibaba' WHERE vendor = 'aliyun';
UPDATE vendor_charge_entries SET vendor = 'alibaba' WHERE vendor = 'aliyun';
UPDATE rate_limits SET limit_key = 'alibaba.' || substr(limit_key, 8) WHERE limit_key LIKE 'aliyun.%';
