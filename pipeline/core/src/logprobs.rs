//! Compact teacher log-probs: the binary form of a sample's [`TokenLogprob`]s used in the
//! teacher cache and between stages (issue #15). JSON spends 1-4 KB per teacher token at
//! top-20 (token strings and byte arrays for every alternative); this form spends about
//! 40-70 bytes after zstd.
//!
//! Per sample (`encode`):
//!
//! ```text
//! version u8 (= 1) ‖ varint #tokens ‖ per token:
//!     entry(sampled token) ‖ varint #alternatives ‖ entry(alternative)*
//! entry = varint (string_ref << 2 | bytes_kind) ‖ [string] ‖ [bytes] ‖ zigzag varint log-prob
//! ```
//!
//! - Token strings are interned per sample: `string_ref = 0` means a new string follows
//!   (length-prefixed UTF-8) and gets the next table index; `string_ref = k > 0` repeats
//!   table entry `k - 1`. Lossless.
//! - `bytes_kind`: 0 = the server sent no bytes (`None`), 1 = bytes equal the token's UTF-8
//!   (the usual case, stored as nothing), 2 = other bytes follow (byte-fallback pieces of a
//!   multi-byte character). Lossless.
//! - Log-probs are fixed point, `q = round(lp * 1024)`: the decoded value is within
//!   `1/2048 = 4.9e-4` nats of what the server sent (the issue allows 2e-3). The sampled
//!   token's `q` is stored as is; each alternative's as the difference from the previous entry
//!   (alternatives come sorted, so the differences are small). Values are clamped to
//!   [-1e7, 1e7] first (the server's floor for "probability 0" is -9999).
//!
//! [`pack`] / [`unpack`] add zstd (level 3) around the same bytes.

use std::collections::HashMap;

use crate::records::{TokenLogprob, TopLogprob};
use crate::varint::{self, Corrupt, Reader};

const VERSION: u8 = 1;
/// Fixed-point scale: log-probs are stored in units of 1/1024 nat.
pub const SCALE: f32 = 1024.0;
const CLAMP: f32 = 1e7;
const ZSTD_LEVEL: i32 = 3;

fn quantize(lp: f32) -> i64 {
    let lp = if lp.is_nan() { -CLAMP } else { lp.clamp(-CLAMP, CLAMP) };
    (lp * SCALE).round() as i64
}

fn dequantize(q: i64) -> f32 {
    (q as f64 / SCALE as f64) as f32
}

/// The value a log-prob has after a round trip through this format. Answers fresh from the
/// server are passed through it too, so a re-run that reads them from the cache writes the
/// same bytes as the run that paid for them.
pub fn canonical(lp: f32) -> f32 {
    dequantize(quantize(lp))
}

/// [`canonical`] on every log-prob of `tokens`.
pub fn canonicalize(tokens: &mut [TokenLogprob]) {
    for t in tokens {
        t.logprob = canonical(t.logprob);
        for a in &mut t.top {
            a.logprob = canonical(a.logprob);
        }
    }
}

/// Per-sample string table while encoding.
struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    table: HashMap<&'a str, u64>,
}

impl<'a> Encoder<'a> {
    fn entry(&mut self, token: &'a str, bytes: &Option<Vec<u8>>, q: i64) {
        let kind = match bytes {
            None => 0,
            Some(b) if b.as_slice() == token.as_bytes() => 1,
            Some(_) => 2,
        };
        match self.table.get(token) {
            Some(&k) => varint::put(self.out, ((k + 1) << 2) | kind),
            None => {
                varint::put(self.out, kind);
                varint::put_bytes(self.out, token.as_bytes());
                let k = self.table.len() as u64;
                self.table.insert(token, k);
            }
        }
        if let (2, Some(b)) = (kind, bytes) {
            varint::put_bytes(self.out, b);
        }
        varint::put_signed(self.out, q);
    }
}

/// Appends the binary form of `tokens` to `out` (see the module docs).
pub fn encode_into(tokens: &[TokenLogprob], out: &mut Vec<u8>) {
    out.push(VERSION);
    varint::put(out, tokens.len() as u64);
    // The table borrows the token strings; it lives only for this call.
    let mut scratch = Vec::with_capacity(tokens.len() * 64);
    {
        let mut enc = Encoder { out: &mut scratch, table: HashMap::new() };
        for t in tokens {
            let q = quantize(t.logprob);
            enc.entry(&t.token, &t.bytes, q);
            varint::put(enc.out, t.top.len() as u64);
            let mut prev = q;
            for a in &t.top {
                let qa = quantize(a.logprob);
                enc.entry(&a.token, &a.bytes, qa - prev);
                prev = qa;
            }
        }
    }
    out.extend_from_slice(&scratch);
}

pub fn encode(tokens: &[TokenLogprob]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(tokens, &mut out);
    out
}

struct Decoder<'a> {
    r: Reader<'a>,
    table: Vec<&'a str>,
}

impl<'a> Decoder<'a> {
    fn entry(&mut self) -> Result<(String, Option<Vec<u8>>, i64), Corrupt> {
        let head = self.r.get()?;
        let (reference, kind) = (head >> 2, head & 3);
        let token: &str = if reference == 0 {
            let s = self.r.get_str()?;
            self.table.push(s);
            s
        } else {
            self.table.get((reference - 1) as usize).ok_or(Corrupt { at: 0, what: "string reference past the table" })?
        };
        let bytes = match kind {
            0 => None,
            1 => Some(token.as_bytes().to_vec()),
            2 => Some(self.r.get_bytes()?.to_vec()),
            _ => return Err(Corrupt { at: 0, what: "unknown bytes kind" }),
        };
        Ok((token.to_string(), bytes, self.r.get_signed()?))
    }
}

/// Decodes what [`encode_into`] wrote; returns the tokens and the bytes it used.
pub fn decode_prefix(buf: &[u8]) -> Result<(Vec<TokenLogprob>, usize), Corrupt> {
    let mut d = Decoder { r: Reader::new(buf), table: Vec::new() };
    if d.r.get_u8()? != VERSION {
        return Err(Corrupt { at: 0, what: "unknown log-prob format version" });
    }
    let n = d.r.get()? as usize;
    let mut tokens = Vec::with_capacity(n.min(buf.len()));
    for _ in 0..n {
        let (token, bytes, q) = d.entry()?;
        let k = d.r.get()? as usize;
        let mut top = Vec::with_capacity(k.min(buf.len()));
        let mut prev = q;
        for _ in 0..k {
            let (token, bytes, dq) = d.entry()?;
            prev += dq;
            top.push(TopLogprob { token, bytes, logprob: dequantize(prev) });
        }
        tokens.push(TokenLogprob { token, bytes, logprob: dequantize(q), top });
    }
    let used = buf.len() - d.r.rest().len();
    Ok((tokens, used))
}

pub fn decode(buf: &[u8]) -> Result<Vec<TokenLogprob>, Corrupt> {
    decode_prefix(buf).map(|(t, _)| t)
}

/// zstd-compressed [`encode`].
pub fn pack(tokens: &[TokenLogprob]) -> Vec<u8> {
    compress(&encode(tokens))
}

/// The inverse of [`pack`].
pub fn unpack(packed: &[u8]) -> Result<Vec<TokenLogprob>, Corrupt> {
    decode(&decompress(packed)?)
}

/// A sample's tokens decoded for readers that need only each entry's bytes and log-prob (the
/// shards stage): every distinct byte string once in one buffer, no `String` or `Vec` per
/// entry. The bytes of an entry are its `bytes` when the server sent them, else its text.
///
/// Entries refer to the sample's *strings* by index (the codec's interning table), so a reader
/// can do per-string work (a vocabulary lookup) once per distinct string instead of once per
/// entry: a top-20 sample of 400 positions has ~8,400 entries but a few hundred strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatTokens {
    buf: Vec<u8>,
    /// Per string: (start, length) of its bytes in `buf`. Two indices may spell the same bytes
    /// (explicit `bytes` are not interned); each index is one lookup.
    strings: Vec<(u32, u32)>,
    /// Per entry: its string index and log-prob.
    entries: Vec<(u32, f32)>,
    /// Per position: the index of its sampled-token entry; its alternatives are the entries
    /// after it, up to the next position's.
    positions: Vec<u32>,
}

impl FlatTokens {
    /// Positions (sampled tokens).
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Number of strings; string indices are `0..string_count()`.
    pub fn string_count(&self) -> usize {
        self.strings.len()
    }

    /// The bytes of string `s`.
    pub fn string(&self, s: u32) -> &[u8] {
        let (start, len) = self.strings[s as usize];
        &self.buf[start as usize..(start + len) as usize]
    }

    /// The sampled token at position `p`: its string index and log-prob.
    pub fn sampled_entry(&self, p: usize) -> (u32, f32) {
        self.entries[self.positions[p] as usize]
    }

    /// The alternatives at position `p`, in the server's order: string index and log-prob.
    pub fn top_entries(&self, p: usize) -> &[(u32, f32)] {
        let first = self.positions[p] as usize + 1;
        let end = self.positions.get(p + 1).map_or(self.entries.len(), |&e| e as usize);
        &self.entries[first..end]
    }

    /// The sampled token at position `p`: its bytes and log-prob.
    pub fn sampled(&self, p: usize) -> (&[u8], f32) {
        let (s, lp) = self.sampled_entry(p);
        (self.string(s), lp)
    }

    /// The alternatives at position `p`, in the server's order.
    pub fn top(&self, p: usize) -> impl Iterator<Item = (&[u8], f32)> + '_ {
        self.top_entries(p).iter().map(move |&(s, lp)| (self.string(s), lp))
    }

    /// The same tokens, through the binary form (for callers holding [`TokenLogprob`]s).
    pub fn from_tokens(tokens: &[TokenLogprob]) -> Self {
        decode_flat(&encode(tokens)).expect("what encode wrote decodes")
    }
}

/// [`decode`] into a [`FlatTokens`].
pub fn decode_flat(data: &[u8]) -> Result<FlatTokens, Corrupt> {
    let mut r = Reader::new(data);
    if r.get_u8()? != VERSION {
        return Err(Corrupt { at: 0, what: "unknown log-prob format version" });
    }
    let n = r.get()? as usize;
    let mut flat = FlatTokens {
        buf: Vec::with_capacity(data.len()),
        strings: Vec::new(),
        entries: Vec::with_capacity(n.min(data.len()) * 8),
        positions: Vec::with_capacity(n.min(data.len())),
    };
    // Per interned text: its string index.
    let mut table: Vec<u32> = Vec::new();
    let add_string = |flat: &mut FlatTokens, bytes: &[u8]| {
        flat.strings.push((flat.buf.len() as u32, bytes.len() as u32));
        flat.buf.extend_from_slice(bytes);
        (flat.strings.len() - 1) as u32
    };
    let mut entry = |r: &mut Reader, flat: &mut FlatTokens, q_base: i64| -> Result<i64, Corrupt> {
        let head = r.get()?;
        let (reference, kind) = (head >> 2, head & 3);
        let text = if reference == 0 {
            let s = add_string(flat, r.get_bytes()?);
            table.push(s);
            s
        } else {
            *table.get((reference - 1) as usize).ok_or(Corrupt { at: 0, what: "string reference past the table" })?
        };
        let string = match kind {
            0 | 1 => text,
            2 => add_string(flat, r.get_bytes()?),
            _ => return Err(Corrupt { at: 0, what: "unknown bytes kind" }),
        };
        let q = q_base + r.get_signed()?;
        flat.entries.push((string, dequantize(q)));
        Ok(q)
    };
    for _ in 0..n {
        flat.positions.push(flat.entries.len() as u32);
        let q = entry(&mut r, &mut flat, 0)?;
        let k = r.get()? as usize;
        let mut prev = q;
        for _ in 0..k {
            prev = entry(&mut r, &mut flat, prev)?;
        }
    }
    Ok(flat)
}

/// The payload of a `teacher/logprobs.frames` frame: the tokens of each sample of one teacher
/// record, each [`pack`]ed on its own so that a reader unpacks only the samples it needs:
/// `varint #samples ‖ per sample: u8 (0 = no log-probs, 1) [‖ length-prefixed packed tokens]`.
pub fn pack_samples<'a>(samples: impl ExactSizeIterator<Item = Option<&'a [TokenLogprob]>>) -> Vec<u8> {
    let mut out = Vec::new();
    varint::put(&mut out, samples.len() as u64);
    for s in samples {
        match s {
            None => out.push(0),
            Some(tokens) => {
                out.push(1);
                varint::put_bytes(&mut out, &pack(tokens));
            }
        }
    }
    out
}

/// The packed tokens of sample `index` of a [`pack_samples`] payload: `None` when that sample
/// has no log-probs or the record has no such sample.
fn packed_sample(payload: &[u8], index: usize) -> Result<Option<&[u8]>, Corrupt> {
    let mut r = Reader::new(payload);
    let n = r.get()? as usize;
    for i in 0..n {
        let packed = match r.get_u8()? {
            0 => None,
            _ => Some(r.get_bytes()?),
        };
        if i == index {
            return Ok(packed);
        }
    }
    Ok(None)
}

/// Sample `index` of a [`pack_samples`] payload: `Ok(None)` when that sample has no log-probs
/// or the record has no such sample.
pub fn unpack_sample(payload: &[u8], index: usize) -> Result<Option<Vec<TokenLogprob>>, Corrupt> {
    packed_sample(payload, index)?.map(unpack).transpose()
}

/// [`unpack_sample`] as [`FlatTokens`].
pub fn unpack_sample_flat(payload: &[u8], index: usize) -> Result<Option<FlatTokens>, Corrupt> {
    packed_sample(payload, index)?.map(|p| decode_flat(&decompress(p)?)).transpose()
}

/// zstd at the level every compact format here uses.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        // A zstd context costs ~1 MB of set-up at level 3: one per thread, not one per sample.
        static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> =
            std::cell::RefCell::new(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd level 3 is valid"));
    }
    COMPRESSOR.with_borrow_mut(|c| c.compress(raw)).expect("zstd compresses any input held in memory")
}

/// The inverse of [`compress`]. Frames carry their decompressed size (zstd writes it), which
/// sizes the output at once; the limit guards against a corrupt size field.
pub fn decompress(packed: &[u8]) -> Result<Vec<u8>, Corrupt> {
    const LIMIT: u64 = 1 << 30;
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<zstd::bulk::Decompressor<'static>> =
            std::cell::RefCell::new(zstd::bulk::Decompressor::new().expect("a zstd context"));
    }
    let corrupt = Corrupt { at: 0, what: "not a zstd frame" };
    match zstd::zstd_safe::get_frame_content_size(packed) {
        Ok(Some(size)) if size <= LIMIT => DECOMPRESSOR.with_borrow_mut(|d| d.decompress(packed, size as usize)).map_err(|_| corrupt),
        Ok(Some(_)) => Err(corrupt),
        // A frame without its size (none of ours, but zstd allows it): stream it.
        _ => zstd::stream::decode_all(packed).map_err(|_| corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(t: &str, lp: f32, top: &[(&str, f32)]) -> TokenLogprob {
        TokenLogprob {
            token: t.into(),
            bytes: Some(t.as_bytes().to_vec()),
            logprob: lp,
            top: top.iter().map(|&(a, l)| TopLogprob { token: a.into(), bytes: Some(a.as_bytes().to_vec()), logprob: l }).collect(),
        }
    }

    #[test]
    fn identity_is_lossless_and_log_probs_within_half_a_thousandth() {
        let mut tokens = vec![
            tok("def", -0.0001, &[("def", -0.0001), ("class", -9.25), (" import", -12.3456)]),
            tok(" f", -1.5, &[(" g", -0.9), (" f", -1.5), ("def", -3.0)]),
            // A byte-fallback piece: the text is lossy, the bytes are the truth.
            TokenLogprob { token: "\\xe2".into(), bytes: Some(vec![0xe2]), logprob: -9999.0, top: vec![] },
            // Completions endpoints send no bytes at all.
            TokenLogprob { token: "é".into(), bytes: None, logprob: 0.0, top: vec![TopLogprob { token: "e".into(), bytes: None, logprob: -0.3 }] },
        ];
        tokens.push(tokens[0].clone());
        let back = unpack(&pack(&tokens)).unwrap();
        assert_eq!(back.len(), tokens.len());
        for (a, b) in tokens.iter().zip(&back) {
            assert_eq!((&a.token, &a.bytes), (&b.token, &b.bytes));
            assert!((a.logprob - b.logprob).abs() <= 0.5 / SCALE + 1e-6, "{} vs {}", a.logprob, b.logprob);
            assert_eq!(a.top.len(), b.top.len());
            for (x, y) in a.top.iter().zip(&b.top) {
                assert_eq!((&x.token, &x.bytes), (&y.token, &y.bytes));
                assert!((x.logprob - y.logprob).abs() <= 0.5 / SCALE + 1e-6, "{} vs {}", x.logprob, y.logprob);
            }
        }
        // Canonical values are fixed points: what a re-run reads equals what the first run kept.
        let mut canon = tokens.clone();
        canonicalize(&mut canon);
        assert_eq!(unpack(&pack(&canon)).unwrap(), canon);
        assert_eq!(canon, back);
        // The flat view holds the same bytes (the server's, else the text) and log-probs.
        let flat = FlatTokens::from_tokens(&tokens);
        assert_eq!(flat.len(), back.len());
        for (p, t) in back.iter().enumerate() {
            let identity = |b: &Option<Vec<u8>>, s: &str| b.clone().unwrap_or(s.as_bytes().to_vec());
            assert_eq!(flat.sampled(p), (identity(&t.bytes, &t.token).as_slice(), t.logprob));
            let top: Vec<(Vec<u8>, f32)> = flat.top(p).map(|(b, l)| (b.to_vec(), l)).collect();
            assert_eq!(top, t.top.iter().map(|a| (identity(&a.bytes, &a.token), a.logprob)).collect::<Vec<_>>());
        }
        // Differences never accumulate rounding: -12.3456 after two deltas is still exact to 1/2048.
        assert!((back[0].top[2].logprob + 12.3456).abs() <= 0.5 / SCALE);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let good = encode(&[tok("a", -0.1, &[("a", -0.1), ("b", -2.0)])]);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_ref = good.clone();
        bad_ref[3] = 0x7c; // the first string's length: past the end
        assert!(decode(&bad_ref).is_err());
        assert!(unpack(b"not zstd").is_err());
    }

    #[test]
    fn a_record_frame_unpacks_one_sample_at_a_time() {
        let (a, b) = (vec![tok("x", -0.5, &[("x", -0.5)])], vec![tok("y", -0.25, &[]), tok("z", -1.0, &[])]);
        let payload = pack_samples([Some(a.as_slice()), None, Some(b.as_slice())].into_iter());
        assert_eq!(unpack_sample(&payload, 0).unwrap(), Some(a));
        assert_eq!(unpack_sample(&payload, 1).unwrap(), None);
        assert_eq!(unpack_sample(&payload, 2).unwrap(), Some(b));
        assert_eq!(unpack_sample(&payload, 3).unwrap(), None);
        assert!(unpack_sample(&payload[..payload.len() - 1], 2).is_err());
    }
}
