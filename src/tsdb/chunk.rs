//! Gorilla-compressed chunks: delta-of-delta timestamps and XOR-encoded floats
//! (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time Series Database", 2015).
//!
//! The first timestamp lives outside the bit stream (in the chunk header); the first
//! value is stored as 64 raw bits; every later sample stores its timestamp as the
//! difference of successive deltas and its value as the XOR with the previous value,
//! with the leading/trailing zero window reused when it fits. The timestamp buckets
//! are sized for millisecond timestamps with a few ms of scrape jitter.

/// Appends bits to a byte vector, most significant bit first.
#[derive(Default, Clone)]
struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits in the last byte (0 when the last byte is full or there is none).
    free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit && let Some(last) = self.buf.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// Writes the low `n` bits of `value` (n ≤ 64).
    fn write_bits(&mut self, value: u64, mut n: u8) {
        while n > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = self.free.min(n);
            let shift = n - take;
            let bits = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= bits << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
    }
}

/// Reads bits written by [`BitWriter`] through a 64-bit window refilled a byte at a time.
struct BitReader<'a> {
    buf: &'a [u8],
    /// Next byte to load into the window.
    next: usize,
    /// Unread bits, left-aligned; bits past `avail` are zero.
    window: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            next: 0,
            window: 0,
            avail: 0,
        }
    }

    #[inline]
    fn refill(&mut self) {
        while self.avail <= 56 {
            let Some(&byte) = self.buf.get(self.next) else {
                return;
            };
            self.window |= u64::from(byte) << (56 - self.avail);
            self.avail += 8;
            self.next += 1;
        }
    }

    /// Reads `n` bits (n ≤ 56) as the low bits of the result.
    #[inline]
    fn read_short(&mut self, n: u32) -> Option<u64> {
        debug_assert!(n <= 56);
        if n == 0 {
            return Some(0);
        }
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return None;
            }
        }
        let v = self.window >> (64 - n);
        self.window <<= n;
        self.avail -= n;
        Some(v)
    }

    #[inline]
    fn read_bit(&mut self) -> Option<bool> {
        self.read_short(1).map(|b| b == 1)
    }

    /// Reads `n` bits (n ≤ 64) as the low bits of the result.
    #[inline]
    fn read_bits(&mut self, n: u8) -> Option<u64> {
        let n = u32::from(n);
        if n <= 56 {
            return self.read_short(n);
        }
        let high = self.read_short(n - 32)?;
        let low = self.read_short(32)?;
        Some((high << 32) | low)
    }

    /// Counts up to `max` leading one bits and consumes them plus the terminating zero
    /// (if fewer than `max` ones).
    #[inline]
    fn read_unary(&mut self, max: u32) -> Option<u32> {
        if self.avail < max {
            self.refill();
        }
        let ones = (!self.window).leading_zeros().min(max);
        let used = if ones < max { ones + 1 } else { max };
        if used > self.avail {
            return None;
        }
        self.window <<= used;
        self.avail -= used;
        Some(ones)
    }
}

/// Delta-of-delta buckets: (control prefix, prefix length, payload bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 7), (0b110, 3, 14), (0b1110, 4, 20)];

fn fits(dod: i64, bits: u8) -> bool {
    let half = 1i64 << (bits - 1);
    -(half - 1) <= dod && dod <= half
}

fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, bits) in DOD_BUCKETS {
        if fits(dod, bits) {
            w.write_bits(prefix, plen);
            w.write_bits(dod as u64, bits);
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

fn read_dod(r: &mut BitReader) -> Option<i64> {
    let ones = r.read_unary(4)?;
    let bits = match ones {
        0 => return Some(0),
        1..=3 => DOD_BUCKETS[ones as usize - 1].2,
        _ => return r.read_bits(64).map(|b| b as i64),
    };
    let raw = r.read_bits(bits)? as i64;
    let half = 1i64 << (bits - 1);
    Some(if raw > half {
        raw - (1i64 << bits)
    } else {
        raw
    })
}

/// "No reusable window yet" marker for the leading-zero count.
const NO_WINDOW: u8 = 0xff;

/// XOR value state shared by encoder and decoder.
#[derive(Clone, Copy)]
struct XorState {
    value: u64,
    leading: u8,
    trailing: u8,
}

impl XorState {
    fn new(first: u64) -> Self {
        Self {
            value: first,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    fn write(&mut self, w: &mut BitWriter, value: u64) {
        let xor = value ^ self.value;
        self.value = value;
        if xor == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            w.write_bits(xor >> self.trailing, 64 - self.leading - self.trailing);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let significant = 64 - leading - trailing;
        w.write_bit(true);
        w.write_bits(u64::from(leading), 5);
        // 64 significant bits is written as 0 (it cannot otherwise occur).
        w.write_bits(u64::from(significant & 63), 6);
        w.write_bits(xor >> trailing, significant);
    }

    fn read(&mut self, r: &mut BitReader) -> Option<u64> {
        if !r.read_bit()? {
            return Some(self.value);
        }
        if r.read_bit()? {
            let leading = r.read_bits(5)? as u8;
            let mut significant = r.read_bits(6)? as u8;
            if significant == 0 {
                significant = 64;
            }
            self.leading = leading;
            self.trailing = 64u8.checked_sub(leading + significant)?;
        } else if self.leading == NO_WINDOW {
            return None;
        }
        let significant = 64 - self.leading - self.trailing;
        let bits = r.read_bits(significant)?;
        self.value ^= bits << self.trailing;
        Some(self.value)
    }
}

/// The open chunk of a series, appended to in time order.
#[derive(Clone)]
pub(crate) struct HeadChunk {
    w: BitWriter,
    count: u16,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    xor: XorState,
}

impl HeadChunk {
    pub(crate) fn new() -> Self {
        Self {
            w: BitWriter::default(),
            count: 0,
            first_t: 0,
            last_t: 0,
            last_delta: 0,
            xor: XorState::new(0),
        }
    }

    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    pub(crate) fn first_t(&self) -> i64 {
        self.first_t
    }

    pub(crate) fn last_t(&self) -> i64 {
        self.last_t
    }

    /// Appends a sample; the caller guarantees `t` is after the previous sample and cuts
    /// the chunk before it spans more than `u32::MAX` ms.
    pub(crate) fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        if self.count == 0 {
            self.first_t = t;
            self.w.write_bits(bits, 64);
            self.xor = XorState::new(bits);
        } else {
            let delta = t - self.last_t;
            write_dod(&mut self.w, delta - self.last_delta);
            self.last_delta = delta;
            self.xor.write(&mut self.w, bits);
        }
        self.last_t = t;
        self.count += 1;
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.w.buf.capacity()
    }

    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.w.buf, self.first_t, self.count)
    }

    /// Closes the chunk into its compact, immutable form.
    pub(crate) fn seal(self) -> SealedChunk {
        SealedChunk {
            data: self.w.buf.into_boxed_slice(),
            min_t: self.first_t,
            span: u32::try_from(self.last_t - self.first_t).unwrap_or(u32::MAX),
            count: self.count,
        }
    }
}

/// A full chunk: the bit stream plus the header needed to decode and skip it.
pub(crate) struct SealedChunk {
    data: Box<[u8]>,
    min_t: i64,
    /// `max_t - min_t` (chunks are cut well before 49 days).
    span: u32,
    count: u16,
}

impl SealedChunk {
    pub(crate) fn min_t(&self) -> i64 {
        self.min_t
    }

    pub(crate) fn max_t(&self) -> i64 {
        self.min_t + i64::from(self.span)
    }

    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// Bytes of the compressed stream.
    pub(crate) fn data_len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.data, self.min_t, self.count)
    }
}

/// Decodes a chunk's samples in time order.
pub(crate) struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u16,
    started: bool,
    t: i64,
    delta: i64,
    xor: XorState,
}

impl<'a> ChunkIter<'a> {
    fn new(buf: &'a [u8], first_t: i64, count: u16) -> Self {
        Self {
            r: BitReader::new(buf),
            left: count,
            started: false,
            t: first_t,
            delta: 0,
            xor: XorState::new(0),
        }
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if !self.started {
            self.started = true;
            let bits = self.r.read_bits(64)?;
            self.xor = XorState::new(bits);
            return Some((self.t, f64::from_bits(bits)));
        }
        let decoded = read_dod(&mut self.r).and_then(|dod| {
            self.delta += dod;
            self.t += self.delta;
            self.xor.read(&mut self.r)
        });
        match decoded {
            Some(bits) => Some((self.t, f64::from_bits(bits))),
            None => {
                // A truncated stream cannot happen for chunks we wrote; stop cleanly.
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(samples: &[(i64, f64)]) -> usize {
        let mut h = HeadChunk::new();
        for &(t, v) in samples {
            h.append(t, v);
        }
        let head: Vec<_> = h.iter().collect();
        let sealed = h.seal();
        let got: Vec<_> = sealed.iter().collect();
        assert_eq!(got.len(), samples.len());
        for ((a, b), c) in got.iter().zip(samples).zip(&head) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "value at {}", a.0);
            assert_eq!(a.0, c.0);
            assert_eq!(a.1.to_bits(), c.1.to_bits());
        }
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            assert_eq!(sealed.min_t(), first.0);
            // The store cuts chunks long before their span overflows the u32 header.
            if last.0 - first.0 <= i64::from(u32::MAX) {
                assert_eq!(sealed.max_t(), last.0);
            }
        }
        sealed.data.len()
    }

    #[test]
    fn regular_counter_compresses_to_a_few_bits_per_sample() {
        let samples: Vec<_> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 1000, (i / 3) as f64))
            .collect();
        let bytes = roundtrip(&samples);
        assert!(bytes < 120, "{bytes} bytes for 120 samples");
    }

    #[test]
    fn extreme_values_and_timestamps_roundtrip() {
        let mut samples = vec![
            (-5, f64::NAN),
            (0, f64::INFINITY),
            (1, f64::NEG_INFINITY),
            (2, -0.0),
            (3, f64::MIN_POSITIVE),
            (1_000_000, f64::MAX),
            (1_000_001, f64::from_bits(0x7ff0_0000_0000_0002)),
            (i64::MAX / 4, 1.0),
            (i64::MAX / 4 + 1, 1.0),
        ];
        let mut t = i64::MAX / 4 + 1;
        let mut x = 0.123_f64;
        for i in 0..500 {
            t += [
                1,
                63,
                64,
                65,
                -62 + 1000,
                8192,
                8193,
                524_288,
                524_289,
                1 << 40,
            ][i % 10];
            x = x * 1.000_1 + (i as f64).sin();
            samples.push((t, x));
        }
        roundtrip(&samples);
    }

    #[test]
    fn jittered_timestamps_roundtrip() {
        let mut t = 1_000;
        let samples: Vec<_> = (0..120)
            .map(|i| {
                t += 1000 + [0, 3, -2, 7, -7, 1][i % 6];
                (t, i as f64 * 0.5)
            })
            .collect();
        roundtrip(&samples);
    }

    #[test]
    fn bit_reader_reads_what_writer_wrote() {
        let mut w = BitWriter::default();
        w.write_bits(0b101, 3);
        w.write_bits(u64::MAX, 64);
        w.write_bit(true);
        w.write_bits(0x1234, 13);
        let mut r = BitReader::new(&w.buf);
        assert_eq!(r.read_bits(3), Some(0b101));
        assert_eq!(r.read_bits(64), Some(u64::MAX));
        assert_eq!(r.read_bit(), Some(true));
        assert_eq!(r.read_bits(13), Some(0x1234 & 0x1fff));
    }
}
