//! Job → faceprint JSON bodies.

use base64::Engine;
use kyc_schemas::Job;
use serde_json::{json, Value};

use crate::materials::Needed;

/// The materials a Baidu operation sends: the match photo (`uploadMatchImage`) of a session;
/// the result queries send none.
pub(crate) fn materials(job: &Job) -> Needed {
    Needed {
        face_image: job.operation == kyc_schemas::Operation::BaiduStartSession,
        ..Needed::NONE
    }
}

pub fn generate(plan_id: &str) -> Value {
    json!({ "plan_id": plan_id })
}

/// `idcard/submit`, when the job names the person; `certificate_type` 0 (mainland resident
/// ID, the only kind the producer accepts).
pub fn idcard_submit(job: &Job, verify_token: &str) -> Option<Value> {
    let name = job.subject.name.as_ref()?;
    let id = job.subject.id_number.as_ref()?;
    Some(json!({
        "verify_token": verify_token,
        "id_name": name.as_str(),
        "id_no": id.as_str(),
        "certificate_type": 0,
    }))
}

/// `uploadMatchImage`: the photo as plain base64 (no `data:` header).
pub fn upload_match_image(
    verify_token: &str,
    image: &[u8],
    quality_control: Option<&str>,
    liveness_control: Option<&str>,
) -> Value {
    let mut body = json!({
        "verify_token": verify_token,
        "image": base64::engine::general_purpose::STANDARD.encode(image),
    });
    if let Some(q) = quality_control {
        body["quality_control"] = json!(q);
    }
    if let Some(l) = liveness_control {
        body["liveness_control"] = json!(l);
    }
    body
}

pub fn by_token(verify_token: &str) -> Value {
    json!({ "verify_token": verify_token })
}
