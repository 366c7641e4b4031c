//! One module per simulated vendor: routes, auth check, request validation, answers.

pub mod alibaba;
pub mod baidu;
pub mod huawei;
