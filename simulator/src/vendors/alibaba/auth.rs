//! Server-side Alibaba authentication, written apart from the worker's signer on purpose
//! (see `lib.rs`):
//! - RPC signature v1 (`HMAC-SHA1`, the legacy SDK and our client): the signature covers the
//!   query *and* the form body, both form-decoded (`+` is a space on the wire);
//! - ACS3-HMAC-SHA256 (the Tea SDK's default): verified against the `SignedHeaders` list the
//!   request carries, whatever headers the SDK chose to sign.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use super::*;

const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Why a request's signature was refused; the vendor answers 400 `SignatureDoesNotMatch`
/// (or `IncompleteSignature` when parts are missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    Missing(&'static str),
    Mismatch { string_to_sign: String },
}

/// Decodes an `application/x-www-form-urlencoded` string (query or body) into pairs.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

/// Verifies an RPC v1 request: `params` are the decoded query and form-body parameters.
/// On a mismatch the error carries the server's string to sign, which the legacy SDK prints
/// after a `:` in the error message.
pub fn verify_rpc_v1(
    method: &str,
    params: &[(String, String)],
    secret: &str,
) -> Result<(), SignatureError> {
    let given = params
        .iter()
        .find(|(k, _)| k == "Signature")
        .map(|(_, v)| v.as_str())
        .ok_or(SignatureError::Missing("Signature"))?;
    let mut signed: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != "Signature").collect();
    signed.sort_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then_with(|| a.1.cmp(&b.1))
    });
    let query = signed
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let string_to_sign = format!("{method}&%2F&{}", enc(&query));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("any key length");
    mac.update(string_to_sign.as_bytes());
    let expected = mac.finalize().into_bytes();
    match B64.decode(given) {
        Ok(sig) if sig.as_slice() == expected.as_slice() => Ok(()),
        _ => Err(SignatureError::Mismatch { string_to_sign }),
    }
}

/// Verifies an ACS3-HMAC-SHA256 request. `headers` are the request's headers (any case),
/// `query` its decoded query pairs, `body` its exact bytes.
pub fn verify_acs3(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: &[u8],
    secret: &str,
) -> Result<(), SignatureError> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let auth = header("authorization").ok_or(SignatureError::Missing("Authorization"))?;
    let rest = auth
        .strip_prefix("ACS3-HMAC-SHA256 ")
        .ok_or(SignatureError::Missing("ACS3-HMAC-SHA256"))?;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v.to_string());
        }
    }
    let signed_headers = signed_headers.ok_or(SignatureError::Missing("SignedHeaders"))?;
    let signature = signature.ok_or(SignatureError::Missing("Signature"))?;
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = header(name).ok_or(SignatureError::Missing("a signed header"))?;
        canonical_headers.push_str(&format!("{}:{value}\n", name.to_ascii_lowercase()));
    }
    // The client states the payload hash; it must be the body's.
    let payload = hex::encode(Sha256::digest(body));
    if header("x-acs-content-sha256").is_some_and(|h| h != payload) {
        return Err(SignatureError::Mismatch {
            string_to_sign: String::new(),
        });
    }
    let canonical = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload}"
    );
    let string_to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    match hex::decode(&signature) {
        Ok(sig) if mac.verify_slice(&sig).is_ok() => Ok(()),
        _ => Err(SignatureError::Mismatch { string_to_sign }),
    }
}

/// Signature (v1 or ACS3), timestamp window and nonce reuse, in the vendor's error codes.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_auth(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    params: &Params,
    query: &[(String, String)],
    acs3: bool,
) -> Result<(), Response> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let bad = |code: &str, msg: &str| error(code, msg);
    let (ak, timestamp, nonce) = if acs3 {
        let auth = header("authorization").unwrap_or_default();
        let ak = auth
            .split(['\x20', ','])
            .find_map(|p| p.strip_prefix("Credential="))
            .ok_or_else(|| {
                bad(
                    "IncompleteSignature",
                    "The request signature does not conform to Alibaba standards.",
                )
            })?;
        (ak, header("x-acs-date"), header("x-acs-signature-nonce"))
    } else {
        let ak = params.get("AccessKeyId").ok_or_else(|| {
            bad(
                "MissingAccessKeyId",
                "AccessKeyId is mandatory for this action.",
            )
        })?;
        (ak, params.get("Timestamp"), params.get("SignatureNonce"))
    };
    let secret = s
        .config
        .alibaba
        .access_keys
        .iter()
        .find(|(id, _)| id == ak)
        .map(|(_, secret)| secret.clone())
        .ok_or_else(|| {
            error(
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
    let timestamp = timestamp.ok_or_else(|| {
        bad(
            "MissingTimestamp",
            "Timestamp is mandatory for this action.",
        )
    })?;
    let when = chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| {
            bad(
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        })?
        .and_utc();
    // The simulator's clock (moved by `clock_offset_secs`), as Huawei's signature window:
    // a vendor whose clock is off refuses our timestamps, whatever this host thinks.
    if (s.now() - when).num_seconds().abs() > WINDOW_SECS {
        return Err(bad(
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    let nonce = nonce.ok_or_else(|| {
        bad(
            "MissingSignatureNonce",
            "SignatureNonce is mandatory for this action.",
        )
    })?;
    let verified = if acs3 {
        let hs: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        verify_acs3(method.as_str(), uri.path(), query, &hs, body, &secret)
    } else {
        verify_rpc_v1(method.as_str(), &params.0, &secret)
    };
    match verified {
        Ok(()) => {}
        Err(SignatureError::Missing(_)) => {
            return Err(bad(
                "IncompleteSignature",
                "The request signature does not conform to Alibaba standards.",
            ))
        }
        Err(SignatureError::Mismatch { string_to_sign }) => {
            // The legacy SDK prints the server's string to sign, after the `:`.
            return Err(bad(
                "SignatureDoesNotMatch",
                &format!("Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"),
            ));
        }
    }
    // Only a correctly signed request uses up its nonce (else anyone could burn nonces).
    let now = chrono::Utc::now().timestamp_millis();
    let mut nonces = s.alibaba.nonces.lock().expect("nonce lock");
    if nonces.len() > 100_000 {
        nonces.retain(|_, at| now - *at < WINDOW_SECS * 1000);
    }
    let key = format!("{ak}\u{1f}{nonce}");
    if nonces
        .get(&key)
        .is_some_and(|at| now - *at < WINDOW_SECS * 1000)
    {
        return Err(bad(
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    nonces.insert(key, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../../../tests/vectors/alibaba-rpc-v1.json");

    #[test]
    fn every_official_v1_vector_verifies_and_a_changed_value_does_not() {
        let file: Value = serde_json::from_str(VECTORS).unwrap();
        for v in file["vectors"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap();
            let mut params: Vec<(String, String)> = v["params"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, val)| (k.clone(), val.as_str().unwrap().to_string()))
                .collect();
            params.push(("Signature".into(), v["signature"].as_str().unwrap().into()));
            let method = v["http_method"].as_str().unwrap();
            let secret = v["access_key_secret"].as_str().unwrap();
            assert_eq!(verify_rpc_v1(method, &params, secret), Ok(()), "{name}");
            params[0].1.push('x');
            match verify_rpc_v1(method, &params, secret) {
                Err(SignatureError::Mismatch { string_to_sign }) => {
                    assert!(string_to_sign.starts_with(method))
                }
                other => panic!("{name}: tampered request accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn wire_encoding_with_plus_for_space_is_decoded_before_verifying() {
        // The SDKs form-encode the query on the wire (space as `+`); the signature is over the
        // decoded values.
        let params = form_pairs(
            "AccessKeyId=testid&Action=VerifyMaterial&BizId=b+1%2A~&BizType=T&Format=JSON&Name=%E5%BC%A0%E4%B8%89\
             &RegionId=cn-hangzhou&SignatureMethod=HMAC-SHA1&SignatureNonce=n1&SignatureVersion=1.0\
             &Timestamp=2024-01-01T00%3A00%3A00Z&Version=2019-03-07&Signature=Q5veVtL%2FwHXLywubRl08bgG%2F6nY%3D",
        );
        assert_eq!(verify_rpc_v1("POST", &params, "testsecret"), Ok(()));
    }

    #[test]
    fn the_documented_acs3_vector_verifies() {
        // vendor-protocols.md A2.
        let headers: Vec<(String, String)> = [
            ("host", "cloudauth.aliyuncs.com"),
            ("x-acs-action", "DescribeVerifyResult"),
            ("x-acs-version", "2019-03-07"),
            ("x-acs-date", "2024-01-01T00:00:00Z"),
            ("x-acs-signature-nonce", "n1"),
            (
                "x-acs-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let signed =
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version";
        let mut with_auth = headers.clone();
        with_auth.push((
            "Authorization".into(),
            format!(
                "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={signed},Signature=3522047897a97e509dee82c6fb64258e28427247ca0f2ce0b268e0b794bf0330"
            ),
        ));
        let query = form_pairs("BizId=b%201&BizType=T");
        assert_eq!(
            verify_acs3("POST", "/", &query, &with_auth, b"", "testsecret"),
            Ok(())
        );
        assert!(verify_acs3("POST", "/", &query, &with_auth, b"", "wrong").is_err());
    }
}
