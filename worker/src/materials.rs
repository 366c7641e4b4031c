//! Fetches a job's materials before any vendor call, so that a missing image never costs
//! a (billable) call and never opens a ledger row. Every material is checked against the
//! allowlist first, all of them and for every vendor (also those the vendor downloads
//! itself): a job the producer would have refused is refused again here, before any read.

use bytes::Bytes;
use kyc_objects::{ObjectError, ObjectStore, ObjectUri};
use kyc_schemas::Materials;

/// The job's materials, in memory for the duration of one job.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub face_image: Option<Bytes>,
    pub id_card_front: Option<Bytes>,
    pub id_card_back: Option<Bytes>,
    pub video: Option<Bytes>,
    pub id_chip_photo: Option<Bytes>,
}

/// Which material failed, named by field and by the source it failed against (never by
/// its key, path or query).
#[derive(Debug, thiserror::Error)]
#[error("material {field}: {source}")]
pub struct MaterialError {
    pub field: &'static str,
    #[source]
    pub source: ObjectError,
}

/// `local_only`: leave `s3://` and `http(s)://` materials unread (the vendor downloads them
/// from a URL); read only local files.
pub async fn load(
    objects: &ObjectStore,
    m: &Materials,
    local_only: bool,
) -> Result<Loaded, MaterialError> {
    async fn one(
        objects: &ObjectStore,
        local_only: bool,
        field: &'static str,
        uri: &Option<String>,
    ) -> Result<Option<Bytes>, MaterialError> {
        match uri {
            Some(u) if local_only && !matches!(ObjectUri::parse(u), Ok(ObjectUri::Local(_))) => {
                Ok(None)
            }
            Some(u) => objects
                .get(u)
                .await
                .map(Some)
                .map_err(|source| MaterialError { field, source }),
            None => Ok(None),
        }
    }
    for (field, uri) in [
        ("face_image", &m.face_image),
        ("id_card_front", &m.id_card_front),
        ("id_card_back", &m.id_card_back),
        ("video", &m.video),
        ("id_chip_photo", &m.id_chip_photo),
    ] {
        if let Some(u) = uri {
            objects
                .check_material(u)
                .map_err(|source| MaterialError { field, source })?;
        }
    }
    let (face_image, id_card_front, id_card_back, video, id_chip_photo) = tokio::try_join!(
        one(objects, local_only, "face_image", &m.face_image),
        one(objects, local_only, "id_card_front", &m.id_card_front),
        one(objects, local_only, "id_card_back", &m.id_card_back),
        one(objects, local_only, "video", &m.video),
        one(objects, local_only, "id_chip_photo", &m.id_chip_photo),
    )?;
    Ok(Loaded {
        face_image,
        id_card_front,
        id_card_back,
        video,
        id_chip_photo,
    })
}
