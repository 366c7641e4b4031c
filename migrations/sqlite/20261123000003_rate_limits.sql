-- The account's quotas, shared by every worker replica: one GCRA state row per vendor × API.
-- tat_us is the "theoretical arrival time" (µs since the epoch) of the next free slot; a
-- worker reserves slots by moving it forward atomically. Keep in step with ../postgres/.
CREATE TABLE rate_limits (
    limit_key  TEXT PRIMARY KEY,
    tat_us     INTEGER NOT NULL
);
