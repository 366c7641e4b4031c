//! One module per simulated vendor: routes, auth check, request validation, answers.

pub mod aliyun;
pub mod baidu;
pub mod huawei;
