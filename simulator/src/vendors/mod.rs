//! One file per simulated vendor: routes, auth check, request validation, answers.

pub mod aliyun;
pub mod huawei;
