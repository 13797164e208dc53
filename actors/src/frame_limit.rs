//! The payload limit, enforced on each inbound frame's header.
//!
//! actix-http's WebSocket codec compares a frame's length with its limit only
//! once the whole frame is buffered, and actix-web-actors reads everything
//! the peer sends into that buffer. A header announcing 1 GiB followed by a
//! stream of bytes made the server keep every byte the peer chose to send
//! (issue 9). [`FrameLimit`] sits between the request payload and the codec,
//! follows the frame boundaries (RFC 6455 §5.2) and fails the stream as soon
//! as a header announces more than the limit; the session answers with close
//! 1009. So a socket's read buffer holds at most one frame within the limit
//! plus what one read brings, and fragments are bounded by the session's
//! reassembly check.

use actix_http::error::PayloadError;
use bytes::Bytes;
use futures_core::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The text of the error [`FrameLimit`] fails the stream with, as the
/// session receives it (actix-web-actors keeps only the message).
const FRAME_TOO_BIG: &str = "a WebSocket frame header announced more than the payload limit";

/// Whether a WebSocket protocol I/O error is [`FrameLimit`]'s refusal.
pub fn is_frame_too_big(e: &std::io::Error) -> bool {
    e.to_string() == FRAME_TOO_BIG
}

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Inbound bytes, passed through unchanged while every frame header
/// announces at most `max` payload bytes.
pub struct FrameLimit<S> {
    inner: S,
    max: u64,
    /// Header bytes of the frame being read.
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    failed: bool,
}

impl<S> FrameLimit<S> {
    pub fn new(inner: S, max_frame_bytes: usize) -> Self {
        FrameLimit {
            inner,
            max: max_frame_bytes as u64,
            header: [0; MAX_HEADER],
            have: 0,
            payload_left: 0,
            failed: false,
        }
    }

    /// The header's full length once its first two bytes are in.
    fn header_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let second = self.header[1];
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        Some(2 + extended + mask)
    }

    /// The payload length a complete header announces.
    fn announced(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u16::from_be_bytes([self.header[2], self.header[3]]).into(),
            127 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
            n => n.into(),
        }
    }

    /// Follow frame boundaries through `bytes`; `false` on a header over the limit.
    fn scan(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.header_len() == Some(self.have) {
                let len = self.announced();
                if len > self.max {
                    return false;
                }
                self.have = 0;
                self.payload_left = len;
            }
        }
        true
    }
}

impl<S> Stream for FrameLimit<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.scan(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.failed = true;
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        FRAME_TOO_BIG,
                    )))))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header announcing `len` bytes.
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x81];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = header(len as u64);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    fn limit(max: usize) -> FrameLimit<()> {
        FrameLimit::new((), max)
    }

    #[test]
    fn frames_up_to_the_limit_pass_in_any_split() {
        let mut bytes = Vec::new();
        for len in [0, 1, 125, 126, 1000, 65_535, 65_536] {
            bytes.extend(frame(len));
        }
        for step in [1, 2, 7, 13, 4096, bytes.len()] {
            let mut l = limit(65_536);
            for chunk in bytes.chunks(step) {
                assert!(l.scan(chunk), "split every {step} bytes");
            }
            assert_eq!((l.have, l.payload_left), (0, 0), "ends on a boundary");
        }
    }

    #[test]
    fn a_header_over_the_limit_fails_before_its_payload() {
        for len in [65_537, 1 << 30, 1 << 62, u64::MAX] {
            let mut l = limit(65_536);
            let mut bytes = frame(10);
            bytes.extend(header(len));
            // the header alone, a byte at a time: refused on its last byte
            let n = bytes.len();
            assert!(l.scan(&bytes[..n - 1]), "{len}: not yet");
            assert!(!l.scan(&bytes[n - 1..]), "{len}: refused");
        }
        // a header cut inside its extended length
        let mut l = limit(100);
        let h = header(101);
        assert!(l.scan(&h[..3]));
        assert!(!l.scan(&h[3..]));
    }

    #[test]
    fn unmasked_headers_are_measured_too() {
        // the codec refuses unmasked client frames; the limit still reads them right
        let mut l = limit(200);
        assert!(l.scan(&[0x81, 126, 0, 200]));
        assert!(l.scan(&[b'x'; 200]));
        assert!(!l.scan(&[0x81, 126, 0, 201]));
    }

    #[test]
    fn the_refusal_is_recognised_through_the_codec_stream() {
        // actix-web-actors turns the payload error into an io::Error holding its text
        let e = PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FRAME_TOO_BIG,
        ));
        let seen = std::io::Error::other(format!("{e}"));
        assert!(is_frame_too_big(&seen));
        assert!(!is_frame_too_big(&std::io::Error::other(
            "connection reset"
        )));
    }
}
