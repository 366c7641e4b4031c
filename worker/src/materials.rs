//! Fetches a job's materials before any vendor call, so that a missing image never costs
//! a (billable) call and never opens a ledger row. Every material is checked against the
//! allowlist first, all of them and for every vendor (also those the vendor downloads
//! itself): a job the producer would have refused is refused again here, before any read.
//!
//! Only the materials the operation's request really carries are read ([`Needed`], declared
//! by each vendor's `request.rs` next to the code that builds the body), and they are paid
//! for out of the worker's material budget (`KYC_MATERIAL_BUDGET`) in one reservation per
//! job, of the sizes their sources announce: a job waits for memory rather than the pod
//! running out of it.

use bytes::Bytes;
use kyc_objects::{ObjectError, ObjectStore, ObjectUri, Opened};
use kyc_schemas::Materials;

/// The job's materials, in memory for the duration of one job.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub face_image: Option<Bytes>,
    pub id_card_front: Option<Bytes>,
    pub id_card_back: Option<Bytes>,
    pub video: Option<Bytes>,
    pub id_chip_photo: Option<Bytes>,
    /// What these bytes hold of the material budget, given back with the last clone.
    pub(crate) _budget: std::sync::Arc<kyc_objects::Reservation>,
}

/// Which materials an operation's request carries, given the job (a face image *or* a
/// video; ID-card images only when the name and ID number are not there…).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needed {
    pub face_image: bool,
    pub id_card_front: bool,
    pub id_card_back: bool,
    pub video: bool,
    pub id_chip_photo: bool,
}

impl Needed {
    pub const NONE: Needed = Needed {
        face_image: false,
        id_card_front: false,
        id_card_back: false,
        video: false,
        id_chip_photo: false,
    };
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
/// from a URL); read only local files. Materials the request does not carry (`needed`) are
/// checked against the allowlist but not read.
pub async fn load(
    objects: &ObjectStore,
    m: &Materials,
    needed: Needed,
    local_only: bool,
) -> Result<Loaded, MaterialError> {
    type One = Option<(&'static str, Opened)>;
    async fn open(
        objects: &ObjectStore,
        local_only: bool,
        wanted: bool,
        field: &'static str,
        uri: &Option<String>,
    ) -> Result<One, MaterialError> {
        match uri {
            Some(_) if !wanted => Ok(None),
            Some(u) if local_only && !matches!(ObjectUri::parse(u), Ok(ObjectUri::Local(_))) => {
                Ok(None)
            }
            Some(u) => objects
                .open(u)
                .await
                .map(|o| Some((field, o)))
                .map_err(|source| MaterialError { field, source }),
            None => Ok(None),
        }
    }
    async fn read(objects: &ObjectStore, one: One) -> Result<Option<Bytes>, MaterialError> {
        match one {
            Some((field, opened)) => objects
                .read(opened)
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
    let n = needed;
    let (face_image, id_card_front, id_card_back, video, id_chip_photo) = tokio::try_join!(
        open(
            objects,
            local_only,
            n.face_image,
            "face_image",
            &m.face_image
        ),
        open(
            objects,
            local_only,
            n.id_card_front,
            "id_card_front",
            &m.id_card_front
        ),
        open(
            objects,
            local_only,
            n.id_card_back,
            "id_card_back",
            &m.id_card_back
        ),
        open(objects, local_only, n.video, "video", &m.video),
        open(
            objects,
            local_only,
            n.id_chip_photo,
            "id_chip_photo",
            &m.id_chip_photo
        ),
    )?;
    // One reservation for the whole job, of what its sources announced (the object limit for
    // one that announced nothing), taken at once: a job never holds part of the budget while
    // it waits for the rest, so jobs cannot each hold a part and wait for one another.
    let opened = [
        &face_image,
        &id_card_front,
        &id_card_back,
        &video,
        &id_chip_photo,
    ];
    let announced: u64 = opened
        .iter()
        .filter_map(|o| o.as_ref())
        .map(|(_, o)| o.announced().unwrap_or(kyc_objects::MAX_OBJECT_BYTES))
        .sum();
    let reserved = match objects.material_budget() {
        Some(b) if announced > 0 => b.reserve(announced).await,
        _ => kyc_objects::Reservation::none(),
    };
    let (face_image, id_card_front, id_card_back, video, id_chip_photo) = tokio::try_join!(
        read(objects, face_image),
        read(objects, id_card_front),
        read(objects, id_card_back),
        read(objects, video),
        read(objects, id_chip_photo),
    )?;
    let read_bytes: u64 = [
        &face_image,
        &id_card_front,
        &id_card_back,
        &video,
        &id_chip_photo,
    ]
    .iter()
    .filter_map(|b| b.as_ref())
    .map(|b| b.len() as u64)
    .sum();
    let held = match objects.material_budget() {
        Some(b) => b.settle(reserved, read_bytes),
        None => reserved,
    };
    Ok(Loaded {
        face_image,
        id_card_front,
        id_card_back,
        video,
        id_chip_photo,
        _budget: std::sync::Arc::new(held),
    })
}
