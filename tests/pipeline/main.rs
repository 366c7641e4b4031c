//! Integration tests of the whole pipeline on real services: RabbitMQ, PostgreSQL and an
//! S3-compatible server, all three over verified TLS, started by `scripts/test-all` (which
//! exports `KYC_TEST_*`), plus the vendor simulator on port 0. Each test gets its own
//! database, queue prefix and bucket.

mod all_vendors;
mod bounded_waits;
mod chaos;
mod claims;
mod credentials;
mod csv_safety;
mod db_outage;
mod dead_letters;
mod doctor;
mod embedded;
mod fidelity;
mod group_rows;
mod health;
mod helpers;
mod huawei_auth;
mod input_integrity;
mod material_sources;
mod personal_data;
mod poison;
mod producer_restart;
mod quota_stall;
mod recovery;
mod reports;
mod retries;
mod reverification;
mod server_mode;
mod spend_caps;
mod status;
mod timeouts;
mod tls;
mod vendor_protocols;
mod worker_processes;
