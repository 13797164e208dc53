//! What one node publishes to the others for one event: a small binary
//! header and the already-serialised Pusher frame, so the frame is neither
//! re-encoded nor escaped inside another JSON document.
//!
//! ```text
//! "SY" 0x01                   magic and version
//! u64 node                    the sending node (its own messages are ignored)
//! u64 sent                    microseconds since the Unix epoch (relay latency)
//! u8  flags                   bit 0: a socket to skip follows
//! [u32 node, u64 seq]         that socket's id, if flagged
//! u32 len, app id             UTF-8
//! u32 len, channel            UTF-8
//! frame                       the rest, UTF-8
//! ```
//!
//! Integers are little-endian. Anything else on the channel (another
//! version, another program) is refused by [`decode`] and counted, never
//! delivered.

use switchyard_actors::socket::SocketId;

const MAGIC: [u8; 3] = *b"SY\x01";
const EXCEPT: u8 = 1;

/// Why a message on the cluster channel is not an event of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Switchyard event envelope (version 1)")]
    Foreign,
    #[error("the envelope ends early")]
    Truncated,
    #[error("the envelope holds text that is not UTF-8")]
    NotUtf8,
}

/// One decoded envelope, borrowing from the message.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub node: u64,
    pub sent_us: u64,
    pub except: Option<SocketId>,
    pub app_id: &'a str,
    pub channel: &'a str,
    pub frame: &'a str,
}

/// Write `e` into `out` (cleared first; reused across events so encoding
/// allocates nothing once the buffer has grown).
pub fn encode(out: &mut Vec<u8>, e: &Envelope<'_>) {
    out.clear();
    out.reserve(40 + e.app_id.len() + e.channel.len() + e.frame.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&e.node.to_le_bytes());
    out.extend_from_slice(&e.sent_us.to_le_bytes());
    match e.except {
        Some(id) => {
            out.push(EXCEPT);
            out.extend_from_slice(&id.node.to_le_bytes());
            out.extend_from_slice(&id.seq.to_le_bytes());
        }
        None => out.push(0),
    }
    for text in [e.app_id, e.channel] {
        // App ids and channel names are validated to a few hundred bytes.
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(e.frame.as_bytes());
}

/// Read an envelope; never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len()).map_err(|_| DecodeError::Foreign)? != MAGIC {
        return Err(DecodeError::Foreign);
    }
    let node = r.u64()?;
    let sent_us = r.u64()?;
    let except = match r.take(1)?[0] {
        0 => None,
        EXCEPT => Some(SocketId {
            node: r.u32()?,
            seq: r.u64()?,
        }),
        _ => return Err(DecodeError::Foreign),
    };
    let app_id = r.text()?;
    let channel = r.text()?;
    let frame = std::str::from_utf8(r.0).map_err(|_| DecodeError::NotUtf8)?;
    Ok(Envelope {
        node,
        sent_us,
        except,
        app_id,
        channel,
        frame,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn text(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(except: Option<SocketId>) -> Envelope<'static> {
        Envelope {
            node: 0x0123_4567_89ab_cdef,
            sent_us: 1_700_000_000_000_000,
            except,
            app_id: "app-1",
            channel: "private-chät",
            frame: r#"{"event":"e","channel":"private-chät","data":"{\"a\":1}"}"#,
        }
    }

    #[test]
    fn an_envelope_reads_back_as_written_with_the_frame_bytes_unchanged() {
        let mut buf = Vec::new();
        for except in [
            None,
            Some(SocketId {
                node: 999_999_999,
                seq: u64::MAX,
            }),
        ] {
            let e = sample(except);
            encode(&mut buf, &e);
            assert_eq!(decode(&buf), Ok(sample(except)));
            // The frame is carried verbatim at the end, not re-encoded.
            assert!(buf.ends_with(e.frame.as_bytes()));
        }
        // Reused: a shorter envelope leaves nothing of the longer one behind.
        let short = Envelope {
            frame: "{}",
            ..sample(None)
        };
        encode(&mut buf, &short);
        assert_eq!(decode(&buf), Ok(short));
    }

    #[test]
    fn anything_else_is_refused_without_panicking() {
        let mut buf = Vec::new();
        encode(&mut buf, &sample(Some(SocketId { node: 1, seq: 2 })));
        // Every truncation of a real envelope: refused, or (cut inside the
        // frame) a shorter frame that is still valid UTF-8.
        for cut in 0..buf.len() {
            match decode(&buf[..cut]) {
                Err(_) => {}
                Ok(e) => assert!(sample(None).frame.starts_with(e.frame), "cut {cut}"),
            }
        }
        assert_eq!(decode(b""), Err(DecodeError::Foreign));
        assert_eq!(decode(br#"{"event":"x"}"#), Err(DecodeError::Foreign));
        assert_eq!(decode(b"SY\x02rest"), Err(DecodeError::Foreign));
        let mut bad_flag = buf.clone();
        bad_flag[19] = 7;
        assert_eq!(decode(&bad_flag), Err(DecodeError::Foreign));
        let mut huge_len = buf.clone();
        huge_len[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge_len), Err(DecodeError::Truncated));
        let mut not_utf8 = buf.clone();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        assert_eq!(decode(&not_utf8), Err(DecodeError::NotUtf8));
    }
}
