//! Job → faceprint JSON bodies.

use kyc_schemas::Job;
use serde_json::{json, Value};

use crate::vendors::body::{b64_len, Object};

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

/// `uploadMatchImage`: the photo as plain base64 (no `data:` header), written into the body
/// in place (see `vendors::body`): the job's largest body, held until its answer.
pub fn upload_match_image(
    verify_token: &str,
    image: &[u8],
    quality_control: Option<&str>,
    liveness_control: Option<&str>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(b64_len(image.len()) + 256);
    let mut o = Object::open(&mut body);
    o.field("verify_token", verify_token).base64("image", image);
    if let Some(q) = quality_control {
        o.field("quality_control", q);
    }
    if let Some(l) = liveness_control {
        o.field("liveness_control", l);
    }
    o.close();
    body
}

pub fn by_token(verify_token: &str) -> Value {
    json!({ "verify_token": verify_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_match_image_carries_the_token_the_photo_and_the_controls_set() {
        let photo = [0xFB, 0xFF, 0x00, 0x10];
        let body: Value =
            serde_json::from_slice(&upload_match_image("tok", &photo, Some("LOW"), None)).unwrap();
        assert_eq!(
            body,
            json!({"verify_token": "tok", "image": "+/8AEA==", "quality_control": "LOW"})
        );
        let body: Value =
            serde_json::from_slice(&upload_match_image("tok", &photo, None, Some("HIGH"))).unwrap();
        assert_eq!(
            body,
            json!({"verify_token": "tok", "image": "+/8AEA==", "liveness_control": "HIGH"})
        );
    }
}
