//! Logging setup in one place: human-readable lines for people at a terminal, JSON lines in
//! server mode (`KYC_LOG_FORMAT=json`). Spans carry ids only; no code path logs a name, an
//! ID number or image bytes.

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
        .with_writer(std::io::stderr)
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
