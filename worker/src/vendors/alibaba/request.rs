//! Job → Cloudauth parameters. VerifyMaterial and DescribeVerifyResult put everything in the
//! query (as the SDKs do); SubmitVerification puts `Biz`, `TicketId` and the `Material.N`
//! list in the form body and only the common parameters in the query.

use kyc_schemas::{Job, Operation};

use crate::materials::Needed;

/// The materials whose bytes an Alibaba operation sends: SubmitVerification's `Material.N`
/// pictures (local files as `base64://`; remote ones go as URLs and are not read).
/// VerifyMaterial sends URLs only (the vendor downloads the images), DescribeVerifyResult none.
pub(crate) fn materials(job: &Job) -> Needed {
    if job.operation == Operation::AlibabaSubmitVerification {
        Needed {
            face_image: true,
            id_card_front: true,
            id_card_back: true,
            id_chip_photo: true,
            video: false,
        }
    } else {
        Needed::NONE
    }
}

/// Common RPC parameters (signed together with the operation's own).
pub fn common(
    action: &str,
    version: &str,
    access_key_id: &str,
    region: &str,
    now: chrono::DateTime<chrono::Utc>,
    nonce: &str,
) -> Vec<(String, String)> {
    [
        ("Action", action),
        ("Version", version),
        ("Format", "JSON"),
        ("AccessKeyId", access_key_id),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", &now.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ("RegionId", region),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The image URLs VerifyMaterial downloads (presigned, or the row's own http(s) URLs).
#[derive(Debug, Clone, Default)]
pub struct ImageUrls {
    pub face: Option<String>,
    pub front: Option<String>,
    pub back: Option<String>,
}

/// A job that lacks what the operation needs, named by field.
#[derive(Debug, thiserror::Error)]
#[error("{0} is required for this operation")]
pub struct Missing(pub &'static str);

/// `BizId` / `TicketId`: the row's, else the job id — stable across redeliveries, so a
/// resubmission of the same job is recognised by the vendor instead of billed twice.
pub fn reference(given: Option<&str>, job: &Job) -> String {
    given
        .map(str::to_string)
        .unwrap_or_else(|| job.job_id.as_str().to_string())
}

pub fn verify_material(
    job: &Job,
    biz_type: &str,
    biz_id: &str,
    urls: &ImageUrls,
) -> Result<Vec<(String, String)>, Missing> {
    let name = job.subject.name.as_ref().ok_or(Missing("name"))?;
    let id = job.subject.id_number.as_ref().ok_or(Missing("id_number"))?;
    let face = urls.face.as_ref().ok_or(Missing("face_image"))?;
    let mut p = vec![
        ("BizId".to_string(), biz_id.to_string()),
        ("BizType".to_string(), biz_type.to_string()),
        ("Name".to_string(), name.as_str().to_string()),
        ("IdCardNumber".to_string(), id.as_str().to_string()),
        ("FaceImageUrl".to_string(), face.clone()),
    ];
    if let Some(u) = &urls.front {
        p.push(("IdCardFrontImageUrl".into(), u.clone()));
    }
    if let Some(u) = &urls.back {
        p.push(("IdCardBackImageUrl".into(), u.clone()));
    }
    if let Some(u) = &job.subject.user_id {
        p.push(("UserId".into(), u.clone()));
    }
    Ok(p)
}

/// A picture for SubmitVerification: a URL, or the bytes (sent as `base64://…`).
#[derive(Debug, Clone)]
pub enum Picture {
    Url(String),
    Bytes(bytes::Bytes),
}

#[derive(Debug, Clone, Default)]
pub struct Pictures {
    pub face: Option<Picture>,
    pub front: Option<Picture>,
    pub back: Option<Picture>,
    /// The ID card chip's portrait (`IDPic`).
    pub chip: Option<Picture>,
}

/// The form body of SubmitVerification: `Biz`, `TicketId`, then `Material.N.*` in a fixed
/// order (N from 1; at most 8 of the 10 allowed). Material types: the seed's list (Name,
/// IdentificationNumber, FacePic, IdCardFrontPic, IdCardBackPic, IDPic, Mobile).
pub fn submit(job: &Job, biz: &str, ticket_id: &str, pics: &Pictures) -> Vec<(String, String)> {
    use base64::Engine;
    let mut materials: Vec<(&str, String)> = Vec::new();
    if let Some(n) = &job.subject.name {
        materials.push(("Name", n.as_str().to_string()));
    }
    if let Some(i) = &job.subject.id_number {
        materials.push(("IdentificationNumber", i.as_str().to_string()));
    }
    for (ty, pic) in [
        ("FacePic", &pics.face),
        ("IdCardFrontPic", &pics.front),
        ("IdCardBackPic", &pics.back),
        ("IDPic", &pics.chip),
    ] {
        match pic {
            Some(Picture::Url(u)) => materials.push((ty, u.clone())),
            Some(Picture::Bytes(b)) => materials.push((
                ty,
                format!(
                    "base64://{}",
                    base64::engine::general_purpose::STANDARD.encode(b)
                ),
            )),
            None => {}
        }
    }
    if let Some(m) = &job.subject.mobile {
        materials.push(("Mobile", m.as_str().to_string()));
    }
    let mut p = vec![
        ("Biz".to_string(), biz.to_string()),
        ("TicketId".to_string(), ticket_id.to_string()),
    ];
    for (i, (ty, value)) in materials.into_iter().enumerate() {
        p.push((format!("Material.{}.MaterialType", i + 1), ty.to_string()));
        p.push((format!("Material.{}.Value", i + 1), value));
    }
    p
}

pub fn describe(biz_type: &str, biz_id: &str) -> Vec<(String, String)> {
    vec![
        ("BizId".to_string(), biz_id.to_string()),
        ("BizType".to_string(), biz_type.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_numbers_the_materials_from_one_and_sends_bytes_as_base64() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "job_id": "j1", "batch_id": "b", "source_row": 2,
            "operation": "alibaba.submit_verification",
            "subject": {"name": "张三", "id_number": "11010519491231002X"},
        }))
        .unwrap();
        let pics = Pictures {
            face: Some(Picture::Bytes(bytes::Bytes::from_static(b"\xff\xd8ab"))),
            front: Some(Picture::Url("https://x/f.jpg".into())),
            back: None,
            chip: None,
        };
        let p = submit(&job, "RPBasic", "t-1", &pics);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Material.1.MaterialType"), Some("Name"));
        assert_eq!(get("Material.2.MaterialType"), Some("IdentificationNumber"));
        assert_eq!(get("Material.3.Value"), Some("base64:///9hhYg=="));
        assert_eq!(get("Material.4.MaterialType"), Some("IdCardFrontPic"));
        assert_eq!(get("Material.5.MaterialType"), None);
        assert_eq!(reference(None, &job), "j1");
    }

    /// SubmitVerification seed, Material.n.MaterialType: `IDPic` is 二代身份证芯片中存储的头像照片.
    #[test]
    fn the_chip_portrait_goes_as_idpic_as_the_seed_lists_it() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "job_id": "j1", "batch_id": "b", "source_row": 2,
            "operation": "alibaba.submit_verification",
            "subject": {"name": "张三", "id_number": "11010519491231002X"},
            "materials": {"id_chip_photo": "https://x/chip.jpg"},
        }))
        .unwrap();
        let pics = Pictures {
            chip: Some(Picture::Url("https://x/chip.jpg".into())),
            ..Default::default()
        };
        let p = submit(&job, "RPBasic", "t-1", &pics);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Material.3.MaterialType"), Some("IDPic"));
        assert_eq!(get("Material.3.Value"), Some("https://x/chip.jpg"));
    }
}
