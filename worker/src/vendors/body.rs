//! JSON request bodies that carry images, written straight into one buffer of the right size.
//!
//! Why not a `serde_json::Value` or a serializer: an image's base64 would be a string of its
//! own, then (for a `Value`) a copy inside the value, then a copy in the body, and on the way
//! it would pass character by character through JSON string escaping, which base64's
//! alphabet (`A–Z a–z 0–9 + / =`) never needs. With 100 KiB images that showed in the
//! worker's peak memory (heaptrack) and as 7.5 % of its CPU (perf, `kyc bench throughput`).
//! Text fields still go through serde_json, with its escaping.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// The base64 length of `n` bytes.
pub(crate) fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends `v` as JSON (a string, with its escaping, or a JSON value).
fn push_json<T: serde::Serialize + ?Sized>(body: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(body, v).expect("strings and JSON values serialize");
}

/// Appends `bytes` as a JSON string of their base64, encoded in place.
fn push_base64(body: &mut Vec<u8>, bytes: &[u8]) {
    body.push(b'"');
    let at = body.len();
    body.resize(at + b64_len(bytes.len()), 0);
    let written = B64
        .encode_slice(bytes, &mut body[at..])
        .expect("sized by b64_len");
    body.truncate(at + written);
    body.push(b'"');
}

/// A JSON object written field by field: keys and text values through serde_json, images
/// as base64 in place.
pub(crate) struct Object<'a> {
    body: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `body`.
    pub(crate) fn open(body: &'a mut Vec<u8>) -> Self {
        body.push(b'{');
        Self { body, first: true }
    }

    fn key(&mut self, k: &str) {
        if !std::mem::take(&mut self.first) {
            self.body.push(b',');
        }
        push_json(self.body, k);
        self.body.push(b':');
    }

    /// A field whose value serde_json writes.
    pub(crate) fn field<T: serde::Serialize + ?Sized>(&mut self, k: &str, v: &T) -> &mut Self {
        self.key(k);
        push_json(self.body, v);
        self
    }

    /// A field whose value is `bytes` in base64.
    pub(crate) fn base64(&mut self, k: &str, bytes: &[u8]) -> &mut Self {
        self.key(k);
        push_base64(self.body, bytes);
        self
    }

    /// A field whose value is an object, written by `inner`.
    pub(crate) fn object(&mut self, k: &str, inner: impl FnOnce(&mut Object<'_>)) -> &mut Self {
        self.key(k);
        let mut o = Object::open(self.body);
        inner(&mut o);
        o.close();
        self
    }

    /// A field whose value is a list of one object, written by `inner`.
    pub(crate) fn list_of_one(
        &mut self,
        k: &str,
        inner: impl FnOnce(&mut Object<'_>),
    ) -> &mut Self {
        self.key(k);
        self.body.push(b'[');
        let mut o = Object::open(self.body);
        inner(&mut o);
        o.close();
        self.body.push(b']');
        self
    }

    /// Closes the object.
    pub(crate) fn close(self) {
        self.body.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_the_json_of_its_fields() {
        let mut body = Vec::new();
        let mut o = Object::open(&mut body);
        o.field("text", "a \"quoted\" \\ 名")
            .base64("image", &[0xFB, 0xFF, 0x00, 0x10])
            .field("n", &serde_json::json!(3))
            .object("inner", |i| {
                i.field("k", &true);
            })
            .list_of_one("list", |i| {
                i.field("x", "y");
            });
        o.close();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "text": "a \"quoted\" \\ 名",
                "image": "+/8AEA==",
                "n": 3,
                "inner": {"k": true},
                "list": [{"x": "y"}],
            })
        );
        let mut empty = Vec::new();
        Object::open(&mut empty).close();
        assert_eq!(empty, b"{}");
    }

    #[test]
    fn base64_of_every_length_fills_exactly_its_estimate() {
        for n in 0..10 {
            let bytes = vec![7u8; n];
            let mut body = Vec::new();
            push_base64(&mut body, &bytes);
            assert_eq!(body.len(), b64_len(n) + 2);
            assert_eq!(&body[1..body.len() - 1], B64.encode(&bytes).as_bytes());
        }
    }
}
