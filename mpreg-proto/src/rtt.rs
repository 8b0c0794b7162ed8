//! Per-peer round-trip estimate (RFC 6298 smoothing) and the adaptive probe
//! timeout derived from it: smoothed RTT + 4 × RTT variance, floored and
//! capped, so an 80–150 ms cross-datacenter link is not a failure.

use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rtt {
    srtt_us: u32,
    rttvar_us: u32,
    samples: u32,
}

impl Rtt {
    pub(crate) fn sample(&mut self, rtt: Duration) {
        let r = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        if self.samples == 0 {
            self.srtt_us = r;
            self.rttvar_us = r / 2;
        } else {
            let err = self.srtt_us.abs_diff(r);
            self.rttvar_us = ((3 * u64::from(self.rttvar_us) + u64::from(err)) / 4) as u32;
            self.srtt_us = ((7 * u64::from(self.srtt_us) + u64::from(r)) / 8) as u32;
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// The smoothed RTT, if there was a sample.
    pub(crate) fn estimate(&self) -> Option<Duration> {
        (self.samples > 0).then(|| Duration::from_micros(u64::from(self.srtt_us)))
    }

    /// The probe timeout: `max` until the first sample.
    pub(crate) fn timeout(&self, min: Duration, max: Duration) -> Duration {
        if self.samples == 0 {
            return max;
        }
        let t = u64::from(self.srtt_us) + 4 * u64::from(self.rttvar_us);
        Duration::from_micros(t).clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_clamps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(500));
        let mut r = Rtt::default();
        assert_eq!(r.timeout(min, max), max);
        for _ in 0..50 {
            r.sample(Duration::from_millis(2));
        }
        assert_eq!(r.timeout(min, max), min);
        let mut far = Rtt::default();
        for _ in 0..50 {
            far.sample(Duration::from_millis(300));
        }
        assert!(far.timeout(min, max) >= Duration::from_millis(300));
        far.sample(Duration::from_secs(10));
        assert_eq!(far.timeout(min, max), max);
        assert!(far.estimate().unwrap() > Duration::from_millis(300));
    }
}
