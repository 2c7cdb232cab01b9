//! Small helpers with Redis-exact behaviour: numbers, glob patterns, clocks, randomness.

pub mod clock;
pub mod counter;
pub mod geohash;
mod glob;
pub mod histogram;
mod number;
pub mod oom_score;

pub use clock::{deadline_ahead, now_ms, now_us};
pub use glob::glob_match;
pub use number::{
    format_double, format_fixed4, format_human_double, format_long_double_human, parse_f64,
    parse_i64,
};

/// Asks the CPU to start loading the cache line at `address`. Only a hint: any address may be
/// given, and nothing is read.
#[inline]
pub fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is in every x86_64 CPU and never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// A small, fast, non-cryptographic generator (wyrand) for sampling keys.
pub struct Rng(u64);

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng {
    pub fn new() -> Rng {
        use std::hash::BuildHasher;
        Rng(foldhash::fast::RandomState::default().hash_one(now_us()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Keeps `count` distinct random elements of `items`, in random order (a partial
    /// Fisher-Yates shuffle): HRANDFIELD, SRANDMEMBER, SPOP and ZRANDMEMBER with a count.
    pub fn sample<T>(&mut self, mut items: Vec<T>, count: usize) -> Vec<T> {
        let keep = count.min(items.len());
        for i in 0..keep {
            let j = i + (self.next_u64() % (items.len() - i) as u64) as usize;
            items.swap(i, j);
        }
        items.truncate(keep);
        items
    }
}

thread_local! {
    static THREAD_RNG: std::cell::RefCell<Rng> = std::cell::RefCell::new(Rng::new());
}

/// A random number in [0, 1) from this thread's generator, for draws on hot paths (the LFU
/// counter's) that should not seed a generator each time.
pub fn thread_rng_f64() -> f64 {
    THREAD_RNG.with(|rng| (rng.borrow_mut().next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// Case-insensitive ASCII comparison of a command argument with a keyword.
pub fn eq_ignore_case(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Redis's `sdscatrepr`: a double-quoted string with C-style escapes, as MONITOR shows it.
pub fn repr(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &c in s {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            c if c.is_ascii_graphic() || c == b' ' => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push('"');
    out
}

/// An I/O error as C's `strerror` words it: Rust's text without the " (os error N)" suffix.
pub fn strerror(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

/// Fills `buf` from the kernel's random source (ACL GENPASS), or the process generator if
/// /dev/urandom cannot be read.
pub fn random_bytes(buf: &mut [u8]) {
    use std::io::Read;
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if read.is_err() {
        let mut rng = Rng::new();
        for byte in buf.iter_mut() {
            *byte = rng.next_u64() as u8;
        }
    }
}
