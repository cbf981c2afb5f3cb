//! Memory sizes: a byte count that saturates instead of wrapping (so the
//! size of a `d_head = 999999999999` model is "too much", never a small
//! number), its human form, and the memory the machine has available.
//!
//! # Example
//! ```
//! use physlens::util::memory::Bytes;
//! let params = Bytes::of_values(&[1000, 1000], 4); // a 1000×1000 f32 matrix
//! assert_eq!(params.get(), 4_000_000);
//! assert_eq!(params.to_string(), "3.8 MiB (4000000 bytes)");
//! assert!(Bytes::of_values(&[999_999_999_999, 999_999_999_999], 8).is_saturated());
//! ```

use std::fmt;
use std::ops::{Add, AddAssign, Mul};

/// A number of bytes; arithmetic saturates at `u64::MAX` (shown as "more than 16 EiB").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub u64);

impl Bytes {
    /// No bytes.
    pub const ZERO: Bytes = Bytes(0);

    /// The bytes of a tensor of shape `dims` with `size` bytes per value.
    pub fn of_values(dims: &[usize], size: usize) -> Bytes {
        dims.iter().fold(Bytes(size as u64), |acc, &d| acc * d)
    }

    /// The count.
    pub fn get(self) -> u64 {
        self.0
    }

    /// True when a sum or product overflowed `u64` (the size is at least that).
    pub fn is_saturated(self) -> bool {
        self.0 == u64::MAX
    }

    /// The larger of two sizes.
    pub fn max(self, other: Bytes) -> Bytes {
        Bytes(self.0.max(other.0))
    }
}

impl Add for Bytes {
    type Output = Bytes;
    fn add(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Bytes {
    fn add_assign(&mut self, other: Bytes) {
        *self = *self + other;
    }
}

impl Mul<usize> for Bytes {
    type Output = Bytes;
    fn mul(self, n: usize) -> Bytes {
        Bytes(self.0.saturating_mul(n as u64))
    }
}

impl std::iter::Sum for Bytes {
    fn sum<I: Iterator<Item = Bytes>>(iter: I) -> Bytes {
        iter.fold(Bytes::ZERO, Add::add)
    }
}

/// `"1.5 GiB (1610612736 bytes)"`: binary units for reading, the exact figure for checking.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_saturated() {
            return write!(f, "more than 16 EiB (over {} bytes)", u64::MAX);
        }
        const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} bytes", self.0)
        } else {
            write!(f, "{value:.1} {} ({} bytes)", UNITS[unit], self.0)
        }
    }
}

/// Memory the machine can give this process, and where the figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// The figure.
    pub bytes: Bytes,
    /// Where it came from, for messages (e.g. "MemAvailable in /proc/meminfo").
    pub source: String,
}

/// Assumed when the system does not say (no `/proc/meminfo`): large enough
/// never to refuse a run a workstation can hold, small enough to refuse the
/// sizes no machine has.
pub const FALLBACK: Bytes = Bytes(1 << 40);

/// The memory available now: `MemAvailable` of `/proc/meminfo` (Linux),
/// lowered to the room left under a cgroup v2 limit (`memory.max` −
/// `memory.current`, containers) when there is one; [`FALLBACK`] when
/// neither can be read.
pub fn available() -> Available {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| mem_available(&text));
    let cgroup = cgroup_room();
    match (meminfo, cgroup) {
        (Some(m), Some(c)) if c < m => Available { bytes: c, source: "room under the cgroup's memory.max".into() },
        (Some(m), _) => Available { bytes: m, source: "MemAvailable in /proc/meminfo".into() },
        (None, Some(c)) => Available { bytes: c, source: "room under the cgroup's memory.max".into() },
        (None, None) => {
            Available { bytes: FALLBACK, source: "assumed: the system does not report its free memory".into() }
        }
    }
}

/// `MemAvailable` (in bytes) from the text of `/proc/meminfo`.
pub fn mem_available(meminfo: &str) -> Option<Bytes> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    let scale = match words.next() {
        Some("kB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    Some(Bytes(value.saturating_mul(scale)))
}

/// The room left under this process's cgroup memory limit, when it has one:
/// `memory.max − memory.current` (cgroup v2) or `memory.limit_in_bytes −
/// memory.usage_in_bytes` (v1), in its own cgroup or at the mount's root (as
/// a container sees it).
fn cgroup_room() -> Option<Bytes> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v2 = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim().trim_start_matches('/');
    let v1 = own.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p)).unwrap_or("/");
    let v1 = v1.trim().trim_start_matches('/');
    let root = std::path::Path::new("/sys/fs/cgroup");
    let candidates = [
        (root.join(v2), "memory.max", "memory.current"),
        (root.to_path_buf(), "memory.max", "memory.current"),
        (root.join("memory").join(v1), "memory.limit_in_bytes", "memory.usage_in_bytes"),
        (root.join("memory"), "memory.limit_in_bytes", "memory.usage_in_bytes"),
    ];
    candidates.iter().find_map(|(dir, limit, usage)| {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok()?.trim().parse::<u64>().ok();
        let max = read(limit)?; // "max" (no limit) does not parse
        Some(Bytes(max.saturating_sub(read(usage).unwrap_or(0))))
    })
}

/// What a workload will hold at its peak, part by part, worked out before
/// anything is allocated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    /// What each part is, with its bytes; the peak is their sum.
    pub parts: Vec<(String, Bytes)>,
}

impl Estimate {
    /// Adds a part.
    pub fn add(&mut self, what: &str, bytes: Bytes) {
        self.parts.push((what.to_string(), bytes));
    }

    /// The peak: all parts at once.
    pub fn total(&self) -> Bytes {
        self.parts.iter().map(|(_, b)| *b).sum()
    }

    /// The largest part.
    pub fn largest(&self) -> Option<&(String, Bytes)> {
        self.parts.iter().max_by_key(|(_, b)| *b)
    }

    /// Adds every part of `other` (a workload running beside this one),
    /// each named with `prefix` in front.
    pub fn add_all(&mut self, prefix: &str, other: &Estimate) {
        self.parts.extend(other.parts.iter().map(|(what, b)| (format!("{prefix}{what}"), *b)));
    }

    /// Why `workload` is refused when it needs more than `available`, or
    /// `None` when it fits; `advice` (a sentence) says what to change.
    pub fn refusal(&self, workload: &str, available: &Available, advice: &str) -> Option<String> {
        let total = self.total();
        if total <= available.bytes {
            return None;
        }
        let largest = self.largest().map(|(what, b)| format!("; the largest part is {what}: {b}")).unwrap_or_default();
        Some(format!(
            "{workload} needs an estimated {total} of memory, more than the {} available ({}){largest}. {advice}",
            available.bytes, available.source
        ))
    }
}
