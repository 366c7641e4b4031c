//! Every code the simulated H5 service sends, looked up in Baidu's table
//! (`kyc_schemas::codes::baidu`) at compile time: a code that is not in the table does not
//! build. `EMITS` lists them for the test that says so.

use super::*;

// Every code this file sends, looked up in Baidu's table at compile time: a code that is not
// in the table does not build. `EMITS` lists them for the test that says so.
pub(super) const E_6: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "6");
pub(super) const E_17: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "17");
pub(super) const E_18: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "18");
pub(super) const E_19: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "19");
pub(super) const E_100: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "100");
pub(super) const E_110: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "110");
pub(super) const E_111: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "111");
pub(super) const E_216100: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "216100");
pub(super) const E_216101: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "216101");
pub(super) const E_216102: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "216102");
pub(super) const E_282000: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "282000");
pub(super) const E_283435: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "283435");
pub(super) const E_283513: &CodeRow = kyc_schemas::codes::get(TABLE, ERROR_CODE, "283513");
pub(super) const A_222360: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "222360");
pub(super) const A_222354: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "222354");
pub(super) const A_222356: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "222356");
pub(super) const A_222355: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "222355");
pub(super) const A_222361: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "222361");
pub(super) const A_223120: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "223120");
pub(super) const A_990902: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "990902");
pub(super) const A_990909: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "990909");
pub(super) const A_0: &CodeRow = kyc_schemas::codes::get(TABLE, ATTEMPT_CODE, "0");

/// Every code this simulator can emit.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const EMITS: &[&CodeRow] = &[
    E_6, E_17, E_18, E_19, E_100, E_110, E_111, E_216100, E_216101, E_216102, E_282000, E_283435,
    E_283513, A_222360, A_222354, A_222356, A_222355, A_222361, A_223120, A_990902, A_990909, A_0,
];
