//! LEB128 variable-length integers and zigzag signs, the building blocks of the compact binary
//! formats ([`crate::logprobs`], [`crate::frames`]): 7 bits a byte, low bits first, the high bit
//! set on every byte but the last. Values below 128 take one byte, below 16,384 two.

/// Appends `v` as LEB128.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a signed value: zigzag (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...), then LEB128.
pub fn put_signed(out: &mut Vec<u8>, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads values back from a byte slice; every read fails cleanly on truncated or corrupt input.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Input ended early or held an impossible value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("corrupt or truncated data at byte {at}: {what}")]
pub struct Corrupt {
    pub at: usize,
    pub what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn corrupt(&self, what: &'static str) -> Corrupt {
        Corrupt { at: self.pos, what }
    }

    pub fn get(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let &b = self.buf.get(self.pos).ok_or_else(|| self.corrupt("varint cut short"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.corrupt("varint longer than 10 bytes"))
    }

    pub fn get_signed(&mut self) -> Result<i64, Corrupt> {
        let z = self.get()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A length, checked against what is left (so corrupt input never allocates wildly).
    pub fn get_len(&mut self) -> Result<usize, Corrupt> {
        let n = self.get()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(self.corrupt("length past the end"));
        }
        Ok(n as usize)
    }

    pub fn get_bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.get_len()?;
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub fn get_str(&mut self) -> Result<&'a str, Corrupt> {
        let at = self.pos;
        std::str::from_utf8(self.get_bytes()?).map_err(|_| Corrupt { at, what: "string is not UTF-8" })
    }

    pub fn get_u8(&mut self) -> Result<u8, Corrupt> {
        let &b = self.buf.get(self.pos).ok_or_else(|| self.corrupt("byte missing"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_the_documented_sizes() {
        let mut out = Vec::new();
        for v in [0u64, 127, 128, 16_383, 16_384, u64::MAX] {
            let before = out.len();
            put(&mut out, v);
            let expected = match v {
                0..=127 => 1,
                128..=16_383 => 2,
                16_384..=2_097_151 => 3,
                _ => 10,
            };
            assert_eq!(out.len() - before, expected, "{v}");
        }
        for v in [0i64, -1, 1, -64, 63, -64_000, i64::MIN, i64::MAX] {
            put_signed(&mut out, v);
        }
        put_bytes(&mut out, "héllo".as_bytes());
        let mut r = Reader::new(&out);
        for v in [0u64, 127, 128, 16_383, 16_384, u64::MAX] {
            assert_eq!(r.get().unwrap(), v);
        }
        for v in [0i64, -1, 1, -64, 63, -64_000, i64::MIN, i64::MAX] {
            assert_eq!(r.get_signed().unwrap(), v);
        }
        assert_eq!(r.get_str().unwrap(), "héllo");
        assert!(r.is_empty());
        assert!(r.get().is_err());
    }

    #[test]
    fn corrupt_lengths_are_refused_without_allocating() {
        let mut out = Vec::new();
        put(&mut out, 1 << 40);
        out.extend_from_slice(b"abc");
        assert_eq!(Reader::new(&out).get_bytes().unwrap_err().what, "length past the end");
        assert_eq!(Reader::new(&[0x80, 0x80]).get().unwrap_err().what, "varint cut short");
    }
}
