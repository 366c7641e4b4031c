//! CSV record → `Job`, through the domain types: a row either becomes a job whose fields
//! are proof of their own validity, or a `Reject` that names the row, the column and the
//! reason. The documented columns are listed in [`COLUMNS`]. Material cells must name a
//! location on the allowlist ([`MaterialSources`]); a refused one is shown in the rejects
//! file by its scheme and host (or bucket) only, never its path or query string.

use std::collections::HashMap;

use kyc_objects::MaterialSources;
use kyc_schemas::mask::{mask_middle, mask_name};
use kyc_schemas::{
    IdNumber, IdType, IndexKey, Job, JobId, Materials, Mobile, Operation, PersonName, Subject,
    VendorRefs, JOB_SCHEMA_VERSION,
};
use kyc_store::NewJob;

/// Every column the producer reads. Unknown columns are ignored (exports often carry more).
pub const COLUMNS: [&str; 19] = [
    "customer_ref",
    "operation",
    "name",
    "id_number",
    "id_type",
    "mobile",
    "user_id",
    "face_image",
    "id_card_front",
    "id_card_back",
    "video",
    "id_chip_photo",
    "actions",
    "nod_threshold",
    "biz_type",
    "biz_id",
    "ticket_id",
    "verify_token",
    "plan_id",
];

/// The columns that name a material (an image or a video) the worker will read.
pub const MATERIAL_COLUMNS: [&str; 5] = [
    "face_image",
    "id_card_front",
    "id_card_back",
    "video",
    "id_chip_photo",
];

/// The longest cell accepted, in bytes (URIs and names are far shorter).
pub const MAX_CELL_BYTES: usize = 4096;

/// Operations this build's workers can drive; rows asking for others are refused here
/// rather than failing later in a worker.
pub const SUPPORTED: [Operation; 11] = Operation::ALL;

/// A refused row. `value` is masked where it is personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub row: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// The header, indexed.
#[derive(Debug, Clone)]
pub struct Columns {
    index: HashMap<String, usize>,
    len: usize,
}

impl Columns {
    pub fn new(header: &[String]) -> Self {
        let index = header
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        Self {
            index,
            len: header.len(),
        }
    }

    pub fn name(&self, i: usize) -> Option<&str> {
        self.index
            .iter()
            .find(|(_, v)| **v == i)
            .map(|(k, _)| k.as_str())
    }

    pub fn has(&self, c: &str) -> bool {
        self.index.contains_key(c)
    }

    /// The operation a row asks for, when it names a known one (or the default applies).
    pub fn operation_of(&self, fields: &[String], default: Option<Operation>) -> Option<Operation> {
        match self.index.get("operation").and_then(|&i| fields.get(i)) {
            Some(cell) if !cell.trim().is_empty() => cell.trim().parse().ok(),
            _ => default,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A row's cells by column name; empty cells read as absent.
struct Row<'a> {
    n: u64,
    cols: &'a Columns,
    fields: &'a [String],
}

impl Row<'_> {
    fn get(&self, c: &str) -> Option<&str> {
        let i = *self.cols.index.get(c)?;
        self.fields
            .get(i)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    fn reject(&self, column: &str, reason: impl Into<String>) -> Reject {
        let raw = self.get(column).unwrap_or_default();
        let value = match column {
            "id_number" => mask_middle(raw, 3, 4),
            "name" => mask_name(raw),
            "mobile" => mask_middle(raw, 3, 4),
            c if MATERIAL_COLUMNS.contains(&c) && !raw.is_empty() => kyc_objects::origin(raw),
            _ => raw.chars().take(64).collect(),
        };
        Reject {
            row: self.n,
            column: column.into(),
            value,
            reason: reason.into(),
        }
    }
}

/// Checks the header before any row is read: a file that cannot say which operation its
/// rows want is refused whole.
pub fn check_header(cols: &Columns, default_operation: Option<Operation>) -> Result<(), String> {
    if !cols.has("operation") && default_operation.is_none() {
        return Err(
            "the header has no `operation` column and no default operation was given (--operation)"
                .into(),
        );
    }
    if !cols.has("name")
        && !cols.has("id_number")
        && !cols.has("id_card_front")
        && !cols.has("verify_token")
        && !cols.has("biz_id")
    {
        return Err("the header has none of the identity columns (name, id_number, id_card_front, verify_token, biz_id)".into());
    }
    Ok(())
}

/// The columns `operation` cannot do without, as the header has them or not: `Some(missing)`
/// when no row of that operation could ever be valid with this header. Alternatives count
/// (Huawei takes name + id_number or both ID-card images).
pub fn header_lacks(operation: Operation, cols: &Columns) -> Option<&'static str> {
    let text = cols.has("name") && cols.has("id_number");
    let cards = cols.has("id_card_front") && cols.has("id_card_back");
    match operation {
        Operation::HuaweiStandard | Operation::HuaweiIdcardExtension if !text && !cards => {
            Some(if cols.has("name") {
                "id_number"
            } else {
                "name"
            })
        }
        Operation::HuaweiStandard if !cols.has("face_image") && !cols.has("video") => {
            Some("face_image")
        }
        Operation::AlibabaVerifyMaterial => ["name", "id_number", "face_image"]
            .into_iter()
            .find(|c| !cols.has(c)),
        Operation::AlibabaSubmitVerification if !text && !cols.has("id_card_front") => {
            Some(if cols.has("name") {
                "id_number"
            } else {
                "name"
            })
        }
        Operation::AlibabaDescribeVerifyResult if !cols.has("biz_id") => Some("biz_id"),
        Operation::BaiduResultDetail
        | Operation::BaiduResultSimple
        | Operation::BaiduResultStat
        | Operation::BaiduResultMedia
        | Operation::BaiduResultGetall
            if !cols.has("verify_token") =>
        {
            Some("verify_token")
        }
        _ => None,
    }
}

/// Resolves an image cell: a full URI stays as is; a key is joined to `images` when that is
/// an `s3://` prefix, and kept relative (the worker's image folder) otherwise.
fn resolve(cell: &str, images: Option<&str>) -> String {
    if cell.contains("://") {
        return cell.to_string();
    }
    match images {
        Some(base) if base.starts_with("s3://") => {
            format!(
                "{}/{}",
                base.trim_end_matches('/'),
                cell.trim_start_matches('/')
            )
        }
        _ => cell.to_string(),
    }
}

/// Validates one record into a job. `key` makes the job id and the duplicate key keyed
/// hashes: both are derived from the name and ID number and must not reveal them.
/// `images` and `sources` say where material cells point and where they may point.
// Every argument is one independent input of a row's validation; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn to_job(
    key: &IndexKey,
    batch_id: &str,
    row_number: u64,
    fields: &[String],
    cols: &Columns,
    default_operation: Option<Operation>,
    images: Option<&str>,
    sources: &MaterialSources,
) -> Result<NewJob, Reject> {
    let row = Row {
        n: row_number,
        cols,
        fields,
    };
    // No legitimate cell is this long; a pasted blob would otherwise travel to the vendor.
    if let Some((i, _)) = fields
        .iter()
        .enumerate()
        .find(|(_, f)| f.len() > MAX_CELL_BYTES)
    {
        let column = cols.name(i).unwrap_or_default();
        return Err(Reject {
            row: row_number,
            column: column.to_string(),
            value: String::new(),
            reason: format!("cell is longer than {MAX_CELL_BYTES} bytes"),
        });
    }
    if fields.len() != cols.len() {
        return Err(Reject {
            row: row_number,
            column: String::new(),
            value: String::new(),
            reason: format!(
                "expected {} fields as in the header, found {}",
                cols.len(),
                fields.len()
            ),
        });
    }
    let operation = match row.get("operation") {
        Some(op) => op
            .parse::<Operation>()
            .map_err(|e| row.reject("operation", e.to_string()))?,
        None => default_operation.ok_or_else(|| {
            row.reject("operation", "operation is empty and no default was given")
        })?,
    };
    if !SUPPORTED.contains(&operation) {
        return Err(row.reject(
            "operation",
            format!("operation {operation} is not supported by this version"),
        ));
    }
    let name = row
        .get("name")
        .map(PersonName::parse)
        .transpose()
        .map_err(|e| row.reject("name", e.to_string()))?;
    let id_number = row
        .get("id_number")
        .map(IdNumber::parse)
        .transpose()
        .map_err(|e| row.reject("id_number", e.to_string()))?;
    let mobile = row
        .get("mobile")
        .map(Mobile::parse)
        .transpose()
        .map_err(|e| row.reject("mobile", e.to_string()))?;
    if let Some(t) = row.get("id_type") {
        if !matches!(t, "0" | "resident_id") {
            return Err(row.reject(
                "id_type",
                "only mainland resident ID cards (0 / resident_id) are supported",
            ));
        }
    }
    let nod_threshold = row
        .get("nod_threshold")
        .map(|v| {
            v.parse::<f64>()
                .map_err(|_| row.reject("nod_threshold", "not a number"))
        })
        .transpose()?;
    let materials = Materials {
        face_image: row.get("face_image").map(|c| resolve(c, images)),
        id_card_front: row.get("id_card_front").map(|c| resolve(c, images)),
        id_card_back: row.get("id_card_back").map(|c| resolve(c, images)),
        video: row.get("video").map(|c| resolve(c, images)),
        id_chip_photo: row.get("id_chip_photo").map(|c| resolve(c, images)),
    };
    // One reject per row: the first material outside the allowlist names its column.
    for (column, uri) in [
        ("face_image", &materials.face_image),
        ("id_card_front", &materials.id_card_front),
        ("id_card_back", &materials.id_card_back),
        ("video", &materials.video),
        ("id_chip_photo", &materials.id_chip_photo),
    ] {
        if let Some(Err(why)) = uri.as_deref().map(|u| sources.check(u)) {
            return Err(row.reject(column, format!("{column}: {why}")));
        }
    }
    let vendor_refs = VendorRefs {
        biz_type: row.get("biz_type").map(str::to_string),
        biz_id: row.get("biz_id").map(str::to_string),
        ticket_id: row.get("ticket_id").map(str::to_string),
        verify_token: row.get("verify_token").map(str::to_string),
        plan_id: row.get("plan_id").map(str::to_string),
        actions: row.get("actions").map(str::to_string),
        nod_threshold,
    };

    // What each operation needs, named by column.
    let by_text = name.is_some() && id_number.is_some();
    match operation {
        Operation::HuaweiStandard | Operation::HuaweiIdcardExtension => {
            // Huawei reads the identity off the front (人像面); the back is optional (IVS
            // seed tables 4-5, 4-26, 4-61).
            if !by_text && materials.id_card_front.is_none() {
                let missing = if name.is_none() && id_number.is_some() {
                    "name"
                } else {
                    "id_number"
                };
                return Err(row.reject(
                    missing,
                    "name and id_number (or id_card_front) are required",
                ));
            }
            if operation == Operation::HuaweiStandard {
                if materials.face_image.is_none() && materials.video.is_none() {
                    return Err(row.reject(
                        "face_image",
                        "face_image (or video) is required for huawei.standard",
                    ));
                }
                if materials.face_image.is_none() && vendor_refs.actions.is_none() {
                    return Err(row.reject("actions", "a video needs actions (e.g. 1,3)"));
                }
            }
        }
        Operation::AlibabaVerifyMaterial => {
            for (column, present) in [
                ("name", name.is_some()),
                ("id_number", id_number.is_some()),
                ("face_image", materials.face_image.is_some()),
            ] {
                if !present {
                    return Err(row.reject(
                        column,
                        "name, id_number and face_image are required for alibaba.verify_material",
                    ));
                }
            }
        }
        Operation::AlibabaSubmitVerification => {
            if !by_text && materials.id_card_front.is_none() {
                let missing = if name.is_none() { "name" } else { "id_number" };
                return Err(row.reject(
                    missing,
                    "name and id_number (or id_card_front) are required for alibaba.submit_verification",
                ));
            }
        }
        Operation::AlibabaDescribeVerifyResult => {
            if vendor_refs.biz_id.is_none() {
                return Err(row.reject(
                    "biz_id",
                    "biz_id is required for alibaba.describe_verify_result",
                ));
            }
        }
        Operation::BaiduStartSession => {
            // idcard/submit needs both, or neither (plans where the person types them).
            if name.is_some() != id_number.is_some() {
                let missing = if name.is_none() { "name" } else { "id_number" };
                return Err(row.reject(
                    missing,
                    "name and id_number go together for baidu.start_session",
                ));
            }
        }
        Operation::BaiduResultDetail
        | Operation::BaiduResultSimple
        | Operation::BaiduResultStat
        | Operation::BaiduResultMedia
        | Operation::BaiduResultGetall => {
            if vendor_refs.verify_token.is_none() {
                return Err(row.reject(
                    "verify_token",
                    format!("verify_token is required for {operation}"),
                ));
            }
        }
    }
    // Alibaba's limits on its references (BizId ≤ 64 characters; TicketId alike).
    for (column, value) in [
        ("biz_id", &vendor_refs.biz_id),
        ("ticket_id", &vendor_refs.ticket_id),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 64) {
            return Err(row.reject(column, "longer than 64 characters"));
        }
    }

    let customer_ref = row.get("customer_ref").map(str::to_string);
    // The job id hashes everything the job will carry, so an edited row is a new job while
    // an unchanged row, read again, is the same job.
    let mut canonical = [
        operation.identity_name(),
        customer_ref.as_deref().unwrap_or_default(),
        name.as_ref().map(|n| n.as_str()).unwrap_or_default(),
        id_number.as_ref().map(|n| n.as_str()).unwrap_or_default(),
        mobile.as_ref().map(|n| n.as_str()).unwrap_or_default(),
        row.get("user_id").unwrap_or_default(),
        materials.face_image.as_deref().unwrap_or_default(),
        materials.id_card_front.as_deref().unwrap_or_default(),
        materials.id_card_back.as_deref().unwrap_or_default(),
        materials.video.as_deref().unwrap_or_default(),
        &serde_json::to_string(&vendor_refs).unwrap_or_default(),
    ]
    .join("\u{1f}");
    // Appended only when present, so that rows without it keep the job ids they always had.
    if let Some(chip) = &materials.id_chip_photo {
        canonical.push('\u{1f}');
        canonical.push_str(chip);
    }
    // "The same person asking for the same operation": the ID number when there is one,
    // else the vendor reference or the ID-card images.
    let person = id_number
        .as_ref()
        .map(|i| i.as_str().to_string())
        .or_else(|| vendor_refs.verify_token.clone())
        .or_else(|| vendor_refs.biz_id.clone())
        .unwrap_or_else(|| canonical.clone());
    let dedup_key =
        hex::encode(&key.hash("dedup_key", &[operation.identity_name(), &person])[..16]);
    let job = Job {
        schema_version: JOB_SCHEMA_VERSION,
        job_id: JobId::derive(key, batch_id, &canonical),
        batch_id: batch_id.to_string(),
        source_row: row_number,
        customer_ref,
        operation,
        subject: Subject {
            name,
            id_number,
            id_type: IdType::ResidentId,
            mobile,
            user_id: row.get("user_id").map(str::to_string),
        },
        materials,
        vendor_refs,
    };
    Ok(NewJob { job, dedup_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IndexKey {
        static KEY: std::sync::OnceLock<IndexKey> = std::sync::OnceLock::new();
        KEY.get_or_init(IndexKey::generate).clone()
    }

    fn cols() -> Columns {
        Columns::new(&["operation", "name", "id_number", "face_image"].map(String::from))
    }

    fn fields(v: [&str; 4]) -> Vec<String> {
        v.map(String::from).to_vec()
    }

    #[test]
    fn a_good_row_becomes_a_job() {
        let nj = to_job(
            &key(),
            "b",
            2,
            &fields(["huawei.standard", " 张三 ", "11010519491231002x", "f/1.jpg"]),
            &cols(),
            None,
            Some("s3://img/p/"),
            &MaterialSources::default()
                .with_images(Some("s3://img/p/"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(nj.job.subject.name.unwrap().as_str(), "张三");
        assert_eq!(
            nj.job.subject.id_number.unwrap().as_str(),
            "11010519491231002X"
        );
        assert_eq!(
            nj.job.materials.face_image.as_deref(),
            Some("s3://img/p/f/1.jpg")
        );
    }

    #[test]
    fn the_same_row_gives_the_same_job_id() {
        let a = to_job(
            &key(),
            "b",
            2,
            &fields(["huawei.standard", "张三", "11010519491231002X", "f.jpg"]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap();
        let b = to_job(
            &key(),
            "b",
            9,
            &fields(["huawei.standard", "张三", "11010519491231002x", "f.jpg"]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap();
        assert_eq!(a.job.job_id, b.job.job_id);
        assert_eq!(a.dedup_key, b.dedup_key);
    }

    #[test]
    fn rejects_name_the_column_and_mask_the_value() {
        let r = to_job(
            &key(),
            "b",
            7,
            &fields(["huawei.standard", "张三", "110105194912310021", "f.jpg"]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap_err();
        assert_eq!((r.row, r.column.as_str()), (7, "id_number"));
        assert_eq!(r.value, "110***********0021");
        assert!(r.reason.contains("checksum"));
    }

    #[test]
    fn legacy_15_digit_numbers_are_refused_with_a_reason() {
        let r = to_job(
            &key(),
            "b",
            3,
            &fields(["huawei.standard", "张三", "110105491231002", "f.jpg"]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap_err();
        assert!(r.reason.contains("15-digit"), "{}", r.reason);
    }

    #[test]
    fn missing_materials_and_unknown_operations_are_refused() {
        let r = to_job(
            &key(),
            "b",
            2,
            &fields(["huawei.standard", "张三", "11010519491231002X", ""]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap_err();
        assert_eq!(r.column, "face_image");
        let r = to_job(
            &key(),
            "b",
            2,
            &fields(["alibaba.verify_material", "张三", "11010519491231002X", ""]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap_err();
        assert_eq!(r.column, "face_image");
        let r = to_job(
            &key(),
            "b",
            2,
            &fields(["baidu.result_getall", "张三", "11010519491231002X", ""]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap_err();
        assert_eq!(r.column, "verify_token");
        let r = to_job(
            &key(),
            "b",
            2,
            &fields(["huawei.nope", "张三", "11010519491231002X", "f.jpg"]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap_err();
        assert_eq!(r.column, "operation");
        let r = to_job(
            &key(),
            "b",
            2,
            &fields(["huawei.standard", "张三", "11010519491231002X", "f.jpg"])[..3],
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .unwrap_err();
        assert!(r.reason.contains("expected 4 fields"));
    }

    #[test]
    fn the_extension_needs_no_face() {
        assert!(to_job(
            &key(),
            "b",
            2,
            &fields(["huawei.idcard_extension", "张三", "11010519491231002X", ""]),
            &cols(),
            None,
            None,
            &MaterialSources::default(),
        )
        .is_ok());
    }

    #[test]
    fn materials_outside_the_allowlist_are_refused_by_column_without_their_query() {
        let sources = MaterialSources::parse("s3://img/faces/,https://img.example.com/kyc/")
            .unwrap()
            .with_images(Some("s3://img/p/"))
            .unwrap();
        let job = |face: &str| {
            to_job(
                &key(),
                "b",
                4,
                &fields(["huawei.standard", "张三", "11010519491231002X", face]),
                &cols(),
                None,
                Some("s3://img/p/"),
                &sources,
            )
        };
        assert!(job("s3://img/faces/1.jpg").is_ok());
        assert!(job("https://img.example.com/kyc/1.jpg?sig=ok").is_ok());
        assert!(job("relative/key.jpg").is_ok(), "joined to --images");
        for (face, origin) in [
            ("s3://secrets/db.dump", "s3://secrets"),
            (
                "https://evil.example/kyc/1.jpg?X-Amz-Signature=SECRET",
                "https://evil.example",
            ),
            (
                "https://169.254.169.254/latest/meta-data/iam?token=SECRET",
                "https://169.254.169.254",
            ),
            ("http://img.example.com/kyc/1.jpg", "http://img.example.com"),
            ("s3://img/faces/../../secrets/1.jpg", "s3://img"),
            (
                "https://img.example.com/kyc/%2e%2e/admin?SECRET",
                "https://img.example.com",
            ),
            (
                "https://img.example.com@evil.example/kyc/1.jpg",
                "https://evil.example",
            ),
        ] {
            let r = job(face).unwrap_err();
            assert_eq!((r.row, r.column.as_str()), (4, "face_image"), "{face}");
            assert!(
                r.reason
                    .starts_with("face_image: not an allowed material source"),
                "{face}: {}",
                r.reason
            );
            assert_eq!(r.value, origin);
            assert!(!format!("{r:?}").contains("SECRET"), "{r:?}");
        }
    }

    #[test]
    fn a_header_without_operation_needs_a_default() {
        let c = Columns::new(&["name".to_string(), "id_number".to_string()]);
        assert!(check_header(&c, None).is_err());
        assert!(check_header(&c, Some(Operation::HuaweiIdcardExtension)).is_ok());
    }
}
