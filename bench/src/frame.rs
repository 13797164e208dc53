//! WebSocket framing (RFC 6455 §5) as a client needs it: decoding the
//! server's unmasked frames in place and encoding masked client frames.
//! Pure functions over byte slices, so the subscriber read loop
//! ([`crate::subscriber`]) can decode straight out of its read buffer
//! without a per-message allocation.

use std::ops::Range;

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One complete frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// Where the payload lies in the buffer that was decoded.
    pub payload: Range<usize>,
}

impl Frame {
    /// Bytes the frame occupies (header and payload).
    pub fn len(&self) -> usize {
        self.payload.end
    }
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when `buf` holds
/// only part of it, an error for what a server must not send (a masked
/// frame, reserved bits) or a payload longer than `max_payload`.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Option<Frame>, String> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(format!("reserved bits set in frame header {b0:#04x}"));
    }
    if b1 & 0x80 != 0 {
        return Err("masked frame from the server".into());
    }
    let (len, header) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > max_payload as u64 {
        return Err(format!(
            "frame payload of {len} bytes exceeds {max_payload}"
        ));
    }
    let end = header + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        payload: header..end,
    }))
}

/// A final (unfragmented) client frame: `payload` masked with `key`, as
/// every client-to-server frame must be.
pub fn encode_masked(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    out
}

/// An unmasked frame as a server sends it (for tests of the decoder and
/// of the subscriber).
#[cfg(test)]
pub fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn decodes_each_length_form() {
        for n in [0usize, 1, 125, 126, 300, 0xFFFF, 0x10000, 70_000] {
            let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let f = server_frame(true, OP_TEXT, &payload);
            let d = decode(&f, 1 << 20).unwrap().unwrap();
            assert_eq!((d.fin, d.opcode), (true, OP_TEXT), "len {n}");
            assert_eq!(&f[d.payload.clone()], &payload[..], "len {n}");
            assert_eq!(d.len(), f.len(), "len {n}");
        }
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        for n in [5usize, 200, 70_000] {
            let f = server_frame(true, OP_TEXT, &vec![b'x'; n]);
            for cut in 0..f.len() {
                assert_eq!(decode(&f[..cut], 1 << 20), Ok(None), "len {n} cut {cut}");
            }
        }
    }

    #[test]
    fn decodes_only_the_first_of_two_frames() {
        let mut buf = server_frame(true, OP_PING, b"hi");
        let first = buf.len();
        buf.extend(server_frame(true, OP_TEXT, b"second"));
        let d = decode(&buf, 100).unwrap().unwrap();
        assert_eq!(d.opcode, OP_PING);
        assert_eq!(d.len(), first);
        let d2 = decode(&buf[first..], 100).unwrap().unwrap();
        assert_eq!(&buf[first..][d2.payload], b"second");
    }

    #[test]
    fn reports_fragments_and_control_opcodes() {
        let f = server_frame(false, OP_TEXT, b"part");
        let d = decode(&f, 100).unwrap().unwrap();
        assert_eq!((d.fin, d.opcode), (false, OP_TEXT));
        let f = server_frame(true, OP_CLOSE, &[0x03, 0xE8]);
        assert_eq!(decode(&f, 100).unwrap().unwrap().opcode, OP_CLOSE);
    }

    #[test]
    fn rejects_what_a_server_must_not_send() {
        let masked = encode_masked(OP_TEXT, b"x", KEY);
        assert!(decode(&masked, 100).is_err());
        let mut rsv = server_frame(true, OP_TEXT, b"x");
        rsv[0] |= 0x40;
        assert!(decode(&rsv, 100).is_err());
        let big = server_frame(true, OP_TEXT, &[0; 200]);
        assert!(decode(&big, 199).is_err());
        assert!(decode(&big, 200).unwrap().is_some());
    }

    /// Unmasks a client frame the way a server does.
    fn unmask(f: &[u8]) -> (u8, Vec<u8>) {
        assert_eq!(f[0] & 0x80, 0x80, "FIN set");
        assert_eq!(f[1] & 0x80, 0x80, "mask bit set");
        let (len, at) = match f[1] & 0x7F {
            126 => (u16::from_be_bytes([f[2], f[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let key = &f[at..at + 4];
        let body = &f[at + 4..];
        assert_eq!(body.len(), len);
        let plain = body.iter().enumerate().map(|(i, b)| b ^ key[i % 4]);
        (f[0] & 0x0F, plain.collect())
    }

    #[test]
    fn masked_frames_unmask_to_the_payload() {
        for n in [0usize, 34, 125, 126, 0xFFFF, 0x10000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let f = encode_masked(OP_TEXT, &payload, KEY);
            let (op, plain) = unmask(&f);
            assert_eq!(op, OP_TEXT);
            assert_eq!(plain, payload, "len {n}");
            if n > 0 {
                assert_ne!(&f[f.len() - n..], &payload[..], "payload is masked");
            }
        }
        let (op, plain) = unmask(&encode_masked(OP_PONG, b"abc", KEY));
        assert_eq!((op, &plain[..]), (OP_PONG, &b"abc"[..]));
    }
}
