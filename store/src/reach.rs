//! Bounded waits on the database, and why it cannot be reached. A pool hides the cause of a
//! failed connection (it retries a refused one until its acquire timeout, then reports only
//! "pool timed out"), so [`crate::Store::connect_with`] first opens one connection itself,
//! within [`DbTimeouts::connect`], and names what went wrong: refused, unknown host,
//! authentication, TLS, or no answer. Texts never quote the URL (it holds a password).

use std::time::Duration;

/// How long database operations may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTimeouts {
    /// Opening a connection, and waiting for a free one from the pool.
    pub connect: Duration,
    /// One SQL statement: PostgreSQL's `statement_timeout`, SQLite's `busy_timeout` (how
    /// long a statement waits for another connection's write lock).
    pub statement: Duration,
}

/// 10 s to connect: a database that has not answered by then is not about to. 60 s per
/// statement: ours take milliseconds; only a lock held by something stuck takes longer.
impl Default for DbTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            statement: Duration::from_secs(60),
        }
    }
}

/// Why a connection attempt failed, in an operator's words: the first thing to check.
pub fn cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io_cause(io),
        sqlx::Error::Tls(t) => format!("TLS handshake failed: {}", first_line(&t.to_string())),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            match code.as_str() {
                "28P01" | "28000" => format!(
                    "authentication failed (SQLSTATE {code}): check the user and password in KYC_DATABASE_URL"
                ),
                "3D000" => format!("the database does not exist (SQLSTATE {code})"),
                "57P03" => format!("the server is starting up or shutting down (SQLSTATE {code})"),
                "53300" => format!("the server has no free connection slots (SQLSTATE {code})"),
                "" => format!("the server refused: {}", first_line(db.message())),
                _ => format!(
                    "the server refused (SQLSTATE {code}): {}",
                    first_line(db.message())
                ),
            }
        }
        sqlx::Error::Configuration(c) => {
            format!(
                "invalid database URL or options: {}",
                first_line(&c.to_string())
            )
        }
        sqlx::Error::PoolTimedOut => "no connection became free in time".into(),
        other => first_line(&other.to_string()),
    }
}

fn io_cause(io: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let text = io.to_string();
    match io.kind() {
        ConnectionRefused => "connection refused: nothing listens at that host and port".into(),
        ConnectionReset | ConnectionAborted | UnexpectedEof => {
            "the server closed the connection during the handshake".into()
        }
        TimedOut => "the connection attempt timed out".into(),
        // rustls reports a refused certificate through the stream as invalid data.
        _ if text.contains("certificate") || text.contains("handshake") || text.contains("tls") => {
            format!("TLS handshake failed: {}", first_line(&text))
        }
        _ if text.contains("lookup")
            || text.contains("resolve")
            || text.contains("Name or service not known") =>
        {
            "unknown host: the name in KYC_DATABASE_URL does not resolve".into()
        }
        kind => format!("network error ({kind}): {}", first_line(&text)),
    }
}

/// Driver texts can run long; the first line is the part people read.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_failures_are_named_by_their_cause() {
        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(cause(&refused).starts_with("connection refused"));
        let unknown = sqlx::Error::Io(std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        ));
        assert!(
            cause(&unknown).starts_with("unknown host"),
            "{}",
            cause(&unknown)
        );
        let tls = sqlx::Error::Tls("invalid peer certificate: UnknownIssuer".into());
        assert!(cause(&tls).starts_with("TLS handshake failed"));
        let tls = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(
            cause(&tls).starts_with("TLS handshake failed"),
            "{}",
            cause(&tls)
        );
    }
}
