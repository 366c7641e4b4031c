//! A reader that gives up when its source stops sending: the CSV input and material bodies
//! are streamed from S3 after the response has begun, where no request timeout reaches. A
//! read that waits longer than the bound fails with `TimedOut` (the producer's "input failed
//! part-way", the worker's transient storage error) instead of holding its caller forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

/// Wraps `inner`: each read must make progress within `idle`.
#[derive(Debug)]
pub struct StallGuard<R> {
    inner: R,
    idle: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<R> StallGuard<R> {
    pub fn new(inner: R, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: None,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StallGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                // Progress (data, end or error): the next wait starts afresh.
                this.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let idle = this.idle;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.deadline = None;
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no data for {idle:?}"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_source_that_stops_sending_times_out_and_a_steady_one_does_not() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(rx, Duration::from_millis(200));
        tx.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        guarded.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        // Nothing more is sent, and the writer stays open: the next read gives up.
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(tx);
    }
}
