-- Every charge a vendor reports, one row per verification attempt and product (Baidu
-- result/getall: verify / match per attempt, OCR per attempt). The key makes a re-read of
-- the same token (a redelivery, or another batch querying it again) count nothing twice;
-- vendor_charges is moved by the rows that are new. Keep in step with ../sqlite/.
CREATE TABLE vendor_charge_entries (
    vendor         TEXT NOT NULL,
    reference      TEXT NOT NULL,
    attempt        BIGINT NOT NULL,
    product        TEXT NOT NULL,
    job_id         TEXT NOT NULL,
    charged        BIGINT NOT NULL,
    -- OCR calls within the attempt (the vendor's ocr_count); 1 otherwise.
    calls          BIGINT NOT NULL,
    -- As the vendor wrote it (Beijing time, not zero-padded); empty when not charged.
    charge_time    TEXT NOT NULL,
    day            TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (vendor, reference, attempt, product)
);
