//! Every code the simulated IVS sends, looked up in Huawei's table (`kyc_schemas::codes::huawei`)
//! at compile time: a code that is not in the table does not build. `EMITS` lists them for the
//! test that says so.

use super::*;

// Every code this file sends, looked up in Huawei's table at compile time: a code that is not
// in the table does not build. `EMITS` lists them for the test that says so.
pub(super) const APIG_0301: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "APIG.0301");
pub(super) const APIG_0308: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "APIG.0308");
pub(super) const IVS_0001: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0001");
pub(super) const IVS_0002: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0002");
pub(super) const IVS_0003: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0003");
pub(super) const IVS_0004: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0004");
pub(super) const IVS_0005: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0005");
pub(super) const IVS_0006: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0006");
pub(super) const IVS_0007: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0007");
pub(super) const IVS_0008: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0008");
pub(super) const IVS_0009: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0009");
pub(super) const IVS_0010: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0010");
pub(super) const IVS_0011: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0011");
pub(super) const IVS_0012: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0012");
pub(super) const IVS_0014: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0014");
pub(super) const IVS_0015: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0015");
pub(super) const IVS_0101: &CodeRow = kyc_schemas::codes::get(TABLE, "error_code", "IVS.0101");
/// Every code this simulator can emit (the verification codes come from [`VERDICTS`]).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const EMITS: &[&CodeRow] = &[
    APIG_0301, APIG_0308, IVS_0001, IVS_0002, IVS_0003, IVS_0004, IVS_0005, IVS_0006, IVS_0007,
    IVS_0008, IVS_0009, IVS_0010, IVS_0011, IVS_0012, IVS_0014, IVS_0015, IVS_0101,
];
