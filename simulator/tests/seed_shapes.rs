//! The simulator answers in the shapes the seeds document, on a real loopback server.

mod common;

use kyc_simulator::Simulator;
use serde_json::{json, Value};

use common::{answer, baidu};

async fn call(
    http: &reqwest::Client,
    sim: &Simulator,
    access: &str,
    api: &str,
    body: Value,
) -> Value {
    answer(
        http.post(format!(
            "{}/rpc/2.0/brain/solution/faceprint/{api}?access_token={access}",
            sim.base_url()
        ))
        .json(&body),
    )
    .await
}

/// A verified session on `plan` for a passing identity.
async fn verified(http: &reqwest::Client, sim: &Simulator, access: &str, plan: &str) -> String {
    let generated = call(
        http,
        sim,
        access,
        "verifyToken/generate",
        json!({"plan_id": plan}),
    )
    .await;
    let token = generated["result"]["verify_token"]
        .as_str()
        .unwrap()
        .to_string();
    let submitted = call(
        http,
        sim,
        access,
        "idcard/submit",
        json!({"verify_token": token, "id_name": "张三", "id_no": "11010519491231002X"}),
    )
    .await;
    assert_eq!(submitted["success"], true, "{submitted}");
    token
}

/// Seed §二.2 (查询认证结果): `idcard_ocr_result` and `idcard_images` are returned when the
/// plan uses OCR, and not otherwise.
#[tokio::test]
async fn result_detail_carries_the_ocr_fields_on_an_ocr_plan_only() {
    let (sim, http, access) = baidu().await;
    let ocr = verified(&http, &sim, &access, "sim-ocr").await;
    let detail = call(
        &http,
        &sim,
        &access,
        "result/detail",
        json!({"verify_token": ocr}),
    )
    .await;
    assert_eq!(detail["success"], true, "{detail}");
    let r = &detail["result"];
    assert_eq!(
        r["idcard_ocr_result"]["id_card_number"],
        "11010519491231002X"
    );
    assert!(r["idcard_images"]["front_base64"].is_string());
    let plain = verified(&http, &sim, &access, "sim-authority").await;
    let detail = call(
        &http,
        &sim,
        &access,
        "result/detail",
        json!({"verify_token": plain}),
    )
    .await;
    assert!(
        detail["result"].get("idcard_ocr_result").is_none(),
        "{detail}"
    );
    sim.stop().await;
}

/// Seed §二.4 (实时方案视频获取): "video和processVideo不会同时返回".
#[tokio::test]
async fn result_media_never_returns_video_and_process_video_together() {
    let (sim, http, access) = baidu().await;
    let token = verified(&http, &sim, &access, "sim-authority").await;
    let media = call(
        &http,
        &sim,
        &access,
        "result/media/query",
        json!({"verify_token": token}),
    )
    .await;
    assert_eq!(media["success"], true, "{media}");
    let r = &media["result"];
    assert!(
        r.get("video").is_some() != r.get("processVideo").is_some(),
        "exactly one of video / processVideo: {r}"
    );
    sim.stop().await;
}
