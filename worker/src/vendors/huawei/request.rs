//! Job → IVS request body. The variant follows the materials: ID-card images or name + ID
//! number, with a face image or a video (ivs-standard); name + ID number or ID-card images
//! (ivs-idcard-extention). Images travel base64-encoded inside the JSON body.
//!
//! The body is written once, straight into one buffer of the right size: each image is
//! base64-encoded into it, not first into a string of its own, then into a JSON value, then
//! copied into the body (three copies of every image per job in flight, which showed in the
//! worker's peak memory with 100 KiB images), nor through JSON string escaping
//! (`vendors::body`).
//!
//! And it is written only when the call goes out ([`Request::body`], once per attempt): a
//! request is checked and its fields gathered first ([`standard`], [`extension`]), so a job
//! waiting for its ledger row or its rate-limit slot holds its images, not also their base64
//! (a third more again); the body lives for the length of the exchange.

use kyc_schemas::Job;
use serde_json::{Map, Value};

use crate::vendors::body::{b64_len, Object};

use crate::materials::{Loaded, Needed};

/// The materials [`standard`] and [`extension`] put in the body for this job: the ID-card
/// images only without name + ID number, and a face image, else a video (ivs-standard).
pub(crate) fn materials(job: &Job) -> Needed {
    let m = &job.materials;
    let by_images = job.subject.name.is_none() || job.subject.id_number.is_none();
    let standard = job.operation == kyc_schemas::Operation::HuaweiStandard;
    Needed {
        id_card_front: by_images,
        id_card_back: by_images,
        face_image: standard,
        video: standard && m.face_image.is_none(),
        id_chip_photo: false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("{0} is required for this operation")]
    Missing(&'static str),
}

/// One `req_data` item: its text fields, and its images by reference (encoded as written).
#[derive(Default)]
struct Item<'a> {
    text: Map<String, Value>,
    images: Vec<(&'static str, &'a [u8])>,
}

/// Adds the identity: name + ID number text, or else both ID-card images.
fn identity<'a>(job: &Job, m: &'a Loaded, item: &mut Item<'a>) -> Result<(), BuildError> {
    match (&job.subject.name, &job.subject.id_number) {
        (Some(name), Some(id)) => {
            item.text
                .insert("verification_name".into(), name.as_str().into());
            item.text
                .insert("verification_id".into(), id.as_str().into());
        }
        _ => {
            // The official SDK sends `idcard_image1`/`idcard_image2`; the docs' tables say
            // `idcard_image_1`, which the service does not read. The back (国徽面) is optional
            // in every ID-image variant (tables 4-5, 4-26, 4-61).
            let front = m
                .id_card_front
                .as_ref()
                .ok_or(BuildError::Missing("name and id_number, or id_card_front"))?;
            item.images.push(("idcard_image1", front));
            if let Some(back) = &m.id_card_back {
                item.images.push(("idcard_image2", back));
            }
        }
    }
    Ok(())
}

/// Above this much base64, `crop=true` may make the vendor miss the face (tables 4-5, 4-16).
pub(crate) const CROP_RISK_B64_BYTES: usize = 90 * 1024;

/// A checked request, its images by reference: [`Request::body`] writes it.
pub(crate) struct Request<'a> {
    job: &'a Job,
    item: Item<'a>,
}

impl Request<'_> {
    /// The JSON body, in one buffer of the right size, images as base64 in place (see
    /// `vendors::body`). `meta.uuid` is the job id: unique per job, at most 64 characters,
    /// and it lets the vendor (and the simulator) tie a call to a job without any PII.
    pub(crate) fn body(&self) -> Vec<u8> {
        let item = &self.item;
        let images: usize = item.images.iter().map(|(_, b)| b64_len(b.len())).sum();
        let mut body = Vec::with_capacity(images + 1024);
        let mut o = Object::open(&mut body);
        o.object("meta", |m| {
            m.field("uuid", self.job.job_id.as_str());
        })
        .object("data", |d| {
            d.list_of_one("req_data", |i| {
                for (k, v) in &item.text {
                    i.field(k, v);
                }
                for (k, bytes) in &item.images {
                    i.base64(k, bytes);
                }
            });
        });
        o.close();
        body
    }
}

/// ivs-standard: identity plus a face image (with `crop`) or a video (which has no `crop`).
pub(crate) fn standard<'a>(
    job: &'a Job,
    m: &'a Loaded,
    crop: bool,
) -> Result<Request<'a>, BuildError> {
    let mut item = Item::default();
    identity(job, m, &mut item)?;
    if let Some(face) = &m.face_image {
        item.images.push(("face_image", face));
        item.text.insert("crop".into(), crop.into());
    } else if let Some(video) = &m.video {
        item.images.push(("video", video));
        let actions = job
            .vendor_refs
            .actions
            .as_deref()
            .ok_or(BuildError::Missing("actions (for a video)"))?;
        item.text.insert("actions".into(), actions.into());
        if let Some(t) = job.vendor_refs.nod_threshold {
            item.text.insert("nod_threshold".into(), t.into());
        }
    } else {
        return Err(BuildError::Missing("face_image or video"));
    }
    // detail=true: similarity on a 0–1000 scale, normalized to 0–100 in `response`.
    item.text.insert("detail".into(), true.into());
    Ok(Request { job, item })
}

/// ivs-idcard-extention: identity only.
pub(crate) fn extension<'a>(job: &'a Job, m: &'a Loaded) -> Result<Request<'a>, BuildError> {
    let mut item = Item::default();
    identity(job, m, &mut item)?;
    Ok(Request { job, item })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kyc_schemas::{IdNumber, JobId, Operation, PersonName, Subject, JOB_SCHEMA_VERSION};

    /// The bodies the builders write (these shadow the builders of the module).
    fn standard(job: &Job, m: &Loaded, crop: bool) -> Result<Vec<u8>, BuildError> {
        super::standard(job, m, crop).map(|r| r.body())
    }

    fn extension(job: &Job, m: &Loaded) -> Result<Vec<u8>, BuildError> {
        super::extension(job, m).map(|r| r.body())
    }

    fn job() -> Job {
        Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: JobId::from_stored("b-r"),
            batch_id: "b".into(),
            source_row: 2,
            customer_ref: None,
            operation: Operation::HuaweiStandard,
            subject: Subject {
                name: Some(PersonName::parse("张三").unwrap()),
                id_number: Some(IdNumber::parse("11010519491231002X").unwrap()),
                ..Default::default()
            },
            materials: Default::default(),
            vendor_refs: Default::default(),
        }
    }

    #[test]
    fn standard_by_name_and_id_with_a_face() {
        let m = Loaded {
            face_image: Some(vec![0xFF, 0xD8, 1].into()),
            ..Default::default()
        };
        let body: Value = serde_json::from_slice(&standard(&job(), &m, true).unwrap()).unwrap();
        let item = &body["data"]["req_data"][0];
        assert_eq!(item["verification_name"], "张三");
        assert_eq!(item["face_image"], "/9gB");
        assert_eq!(item["detail"], true);
        assert_eq!(item["crop"], true);
        let body: Value = serde_json::from_slice(&standard(&job(), &m, false).unwrap()).unwrap();
        assert_eq!(body["data"]["req_data"][0]["crop"], false);
        assert_eq!(body["meta"]["uuid"], job().job_id.as_str());
    }

    #[test]
    fn images_encoded_as_written_decode_to_the_same_bytes() {
        use base64::engine::general_purpose::STANDARD as B64;
        use base64::Engine as _;
        let face: Vec<u8> = (0..100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
        let m = Loaded {
            face_image: Some(face.clone().into()),
            ..Default::default()
        };
        let body = standard(&job(), &m, true).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        let sent = value["data"]["req_data"][0]["face_image"].as_str().unwrap();
        assert_eq!(sent, B64.encode(&face));
        // One buffer, sized up front: the image's base64 and the small fields.
        assert!(body.len() < b64_len(face.len()) + 1024, "{}", body.len());
    }

    /// The hand-written body is the JSON its fields say: every text field (escaped where a
    /// string needs it) and every image, in one object, and nothing else.
    #[test]
    fn the_body_is_exactly_the_json_of_its_fields() {
        let mut j = job();
        j.job_id = JobId::from_stored("b-\"quoted\"\\r");
        let m = Loaded {
            face_image: Some(vec![0xFB, 0xFF, 0x00, 0x10].into()),
            ..Default::default()
        };
        let body: Value = serde_json::from_slice(&standard(&j, &m, true).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "meta": {"uuid": "b-\"quoted\"\\r"},
                "data": {"req_data": [{
                    "verification_name": "张三",
                    "verification_id": "11010519491231002X",
                    "face_image": "+/8AEA==",
                    "crop": true,
                    "detail": true,
                }]}
            })
        );
    }

    #[test]
    fn id_card_images_use_the_sdk_field_names() {
        let mut j = job();
        j.subject = Subject::default();
        let m = Loaded {
            id_card_front: Some(vec![1].into()),
            id_card_back: Some(vec![2].into()),
            ..Default::default()
        };
        let body: Value = serde_json::from_slice(&extension(&j, &m).unwrap()).unwrap();
        let item = &body["data"]["req_data"][0];
        assert!(item.get("idcard_image1").is_some() && item.get("idcard_image2").is_some());
        assert!(item.get("idcard_image_1").is_none());
    }

    /// Seed tables 4-5, 4-26 and 4-61: `idcard_image2` (国徽面) is 否 (optional).
    #[test]
    fn the_id_card_back_is_optional_as_in_seed_tables_4_5_4_26_4_61() {
        let mut j = job();
        j.subject = Subject::default();
        let m = Loaded {
            id_card_front: Some(vec![1].into()),
            face_image: Some(vec![3].into()),
            ..Default::default()
        };
        for body in [extension(&j, &m).unwrap(), standard(&j, &m, true).unwrap()] {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let item = &body["data"]["req_data"][0];
            assert!(item.get("idcard_image1").is_some());
            assert!(item.get("idcard_image2").is_none());
        }
    }

    #[test]
    fn a_video_needs_actions_and_carries_no_crop() {
        let m = Loaded {
            video: Some(vec![1].into()),
            ..Default::default()
        };
        assert_eq!(
            standard(&job(), &m, true),
            Err(BuildError::Missing("actions (for a video)"))
        );
        let mut j = job();
        j.vendor_refs.actions = Some("5".into());
        let body: Value = serde_json::from_slice(&standard(&j, &m, true).unwrap()).unwrap();
        assert!(body["data"]["req_data"][0].get("crop").is_none());
        assert_eq!(body["data"]["req_data"][0]["actions"], "5");
    }

    /// What `materials` declares is exactly what the builders read: for every shape of job,
    /// the body built from only the declared materials equals the body built from all of
    /// them (so the worker may leave the others unread).
    #[test]
    fn the_declared_materials_are_the_ones_the_body_carries() {
        let all = Loaded {
            face_image: Some(vec![1].into()),
            id_card_front: Some(vec![2].into()),
            id_card_back: Some(vec![3].into()),
            video: Some(vec![4].into()),
            id_chip_photo: Some(vec![5].into()),
            ..Default::default()
        };
        for op in [Operation::HuaweiStandard, Operation::HuaweiIdcardExtension] {
            for named in [true, false] {
                for face in [true, false] {
                    let mut j = job();
                    j.operation = op;
                    j.vendor_refs.actions = Some("1".into());
                    if !named {
                        j.subject = Subject::default();
                    }
                    let mut m = all.clone();
                    if !face {
                        m.face_image = None;
                    }
                    j.materials.face_image = face.then(|| "f.jpg".into());
                    j.materials.video = Some("v.mp4".into());
                    let n = materials(&j);
                    let only = Loaded {
                        face_image: m.face_image.clone().filter(|_| n.face_image),
                        id_card_front: m.id_card_front.clone().filter(|_| n.id_card_front),
                        id_card_back: m.id_card_back.clone().filter(|_| n.id_card_back),
                        video: m.video.clone().filter(|_| n.video),
                        id_chip_photo: m.id_chip_photo.clone().filter(|_| n.id_chip_photo),
                        ..Default::default()
                    };
                    let build = |l: &Loaded| match op {
                        Operation::HuaweiStandard => standard(&j, l, true),
                        _ => extension(&j, l),
                    };
                    assert_eq!(build(&m), build(&only), "{op} named={named} face={face}");
                }
            }
        }
    }
}
