-- Reports: an audit trail of unmasked exports, and the vendors' own charge figures for
-- billing reconciliation (written by the Baidu result/getall operation). Keep in step with ../postgres/.
CREATE TABLE report_audit (
    audit_id     TEXT PRIMARY KEY,
    at_ms        INTEGER NOT NULL,
    who          TEXT NOT NULL,
    report       TEXT NOT NULL,
    filter       TEXT NOT NULL,
    rows_written INTEGER NOT NULL
);

-- What a vendor says it charged, per vendor × product × day (e.g. Baidu getall charge counts).
CREATE TABLE vendor_charges (
    vendor         TEXT NOT NULL,
    product        TEXT NOT NULL,
    day            TEXT NOT NULL,
    charged_calls  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (vendor, product, day)
);
