//! Logging setup in one place: human-readable lines for people at a terminal, JSON lines in
//! server mode (`KYC_LOG_FORMAT=json`). Spans carry ids only; no code path logs a name, an
//! ID number or image bytes. Every line still passes through [`kyc_schemas::scrub_unbounded`]
//! on its way out: a library that logs a URL with its query (a token, a presigned signature) or
//! an error that quotes an ID number is caught there.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `default_level` applies when `RUST_LOG` is unset.
pub fn init(json: bool, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Whatever RUST_LOG says, these crates never log below info: at trace they print whole
    // AMQP frames and HTTP bodies, which carry names and ID numbers.
    let filter = [
        "lapin=info",
        "amq_protocol=info",
        "hyper=info",
        "h2=info",
        "reqwest=info",
    ]
    .into_iter()
    .fold(filter, |f, d| {
        f.add_directive(d.parse().expect("valid directive"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| ScrubbingWriter(std::io::stderr()))
        .with_target(false);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
}

/// Scrubs each formatted event before it is written. The fmt layer formats an event into one
/// buffer and writes it with one call, so a line is never split across two scrubs.
struct ScrubbingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(kyc_schemas::scrub_unbounded(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Panics print where they happened and a scrubbed message, never a raw payload: an
/// `expect` on an error could carry a URL with a token.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "panic at {location}: {}",
            kyc_schemas::scrub_unbounded(&message)
        );
    }));
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::ScrubbingWriter;

    #[test]
    fn log_lines_lose_queries_and_id_numbers_but_stay_whole() {
        let mut out = ScrubbingWriter(Vec::new());
        let line = format!(
            "{{\"msg\":\"GET http://h/x?access_token=T0K3N done\",\"id\":\"110105194912310021\",\"pad\":\"{}\"}}\n",
            "a".repeat(500)
        );
        out.write_all(line.as_bytes()).unwrap();
        let written = String::from_utf8(out.0).unwrap();
        assert!(!written.contains("T0K3N"), "{written}");
        assert!(!written.contains("110105194912310021"), "{written}");
        assert!(
            written.ends_with(&format!("{}\"}}\n", "a".repeat(500))),
            "cut: {written}"
        );
        serde_json::from_str::<serde_json::Value>(written.trim()).expect("still JSON");
    }
}
