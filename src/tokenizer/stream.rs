//! Incremental UTF-8: bytes arrive a token at a time; text leaves a whole character at a time.

/// Turns a growing byte sequence into text. A character whose bytes are split across pushes is emitted once its last
/// byte arrives; bytes that can never become UTF-8 are emitted as U+FFFD straight away, as `from_utf8_lossy` would.
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes and returns the text they complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("checked prefix"));
                    match e.error_len() {
                        // A truncated character at the end: it may still complete.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// The text of bytes still held (an unfinished character, shown as U+FFFD): the end of a stream.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_pushes_come_out_once_whole() {
        let text = "a€😀b";
        let bytes = text.as_bytes();
        let mut s = Utf8Stream::default();
        let mut out = String::new();
        for b in bytes {
            let piece = s.push(std::slice::from_ref(b));
            assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
            out.push_str(&piece);
        }
        assert_eq!(out + &s.finish(), text);
    }

    #[test]
    fn invalid_bytes_match_from_utf8_lossy() {
        for bytes in [&b"\xff\xfeab"[..], b"a\xe2\x82", b"\xe2\x82x\xf0\x9f\x98", b"\xc3\xa9\x80"] {
            let mut s = Utf8Stream::default();
            let mut out = String::new();
            for b in bytes {
                out.push_str(&s.push(std::slice::from_ref(b)));
            }
            out.push_str(&s.finish());
            assert_eq!(out, String::from_utf8_lossy(bytes), "{bytes:?}");
        }
    }
}
