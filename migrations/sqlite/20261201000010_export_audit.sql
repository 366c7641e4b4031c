-- Unmasked exports say who ran them (`operator`: --operator / KYC_OPERATOR, else the OS
-- account; `operator_source` says which), not only the free text of --requested-by (kept in
-- `who`), the filter as columns, and where the rows went. A row is written before the export
-- starts (rows_written -1, finished_at_ms NULL) and completed when the last row is written: a
-- row left so is an export that was aborted. Rows from before this migration have an empty
-- operator. Keep in step with ../postgres/.
ALTER TABLE report_audit ADD COLUMN operator TEXT NOT NULL DEFAULT '';
ALTER TABLE report_audit ADD COLUMN operator_source TEXT NOT NULL DEFAULT '';
ALTER TABLE report_audit ADD COLUMN filter_batch TEXT;
ALTER TABLE report_audit ADD COLUMN filter_from_ms INTEGER;
ALTER TABLE report_audit ADD COLUMN filter_to_ms INTEGER;
ALTER TABLE report_audit ADD COLUMN filter_status TEXT;
ALTER TABLE report_audit ADD COLUMN destination TEXT NOT NULL DEFAULT '';
ALTER TABLE report_audit ADD COLUMN finished_at_ms INTEGER;
