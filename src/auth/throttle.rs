//! Sign-in throttling: failed attempts are counted per account and per client address within
//! a sliding window; past the limit, sign-in is refused (even with the right password) until
//! the oldest failure leaves the window. Kept in memory: a restart forgets, which is fine for a
//! brute-force brake.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Many accounts can share one address (a NAT, an office), so addresses get more room.
const ADDRESS_FACTOR: usize = 4;
/// Bound on remembered keys so a flood of made-up emails cannot grow memory without limit.
const MAX_KEYS: usize = 100_000;

pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures: max_failures as usize, window, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(email: &str, address: Option<&str>) -> [(String, usize); 2] {
        [(format!("account:{email}"), 1), (format!("address:{}", address.unwrap_or("unknown")), ADDRESS_FACTOR)]
    }

    /// `Err(seconds)` when sign-in must be refused, with the time until it may be tried again.
    pub fn check(&self, email: &str, address: Option<&str>, now: DateTime<Utc>) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = 0i64;
        for (key, factor) in Self::keys(email, address) {
            if let Some(times) = map.get_mut(&key) {
                while times.front().is_some_and(|t| *t <= now - self.window) {
                    times.pop_front();
                }
                if times.len() >= self.max_failures * factor {
                    if let Some(oldest) = times.front() {
                        wait = wait.max((*oldest + self.window - now).num_seconds() + 1);
                    }
                }
            }
        }
        if wait > 0 {
            Err(wait as u64)
        } else {
            Ok(())
        }
    }

    pub fn record_failure(&self, email: &str, address: Option<&str>, now: DateTime<Utc>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, times| times.back().is_some_and(|t| *t > now - window));
        }
        for (key, _) in Self::keys(email, address) {
            map.entry(key).or_default().push_back(now);
        }
    }

    /// A successful sign-in clears the account's failures (not the address's).
    pub fn record_success(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("account:{email}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_limit_and_unlocks_after_window() {
        let throttle = LoginThrottle::new(3, Duration::minutes(15));
        let t0 = Utc::now();
        for _ in 0..3 {
            assert!(throttle.check("a@x.io", Some("1.2.3.4"), t0).is_ok());
            throttle.record_failure("a@x.io", Some("1.2.3.4"), t0);
        }
        let wait = throttle.check("a@x.io", Some("1.2.3.4"), t0).unwrap_err();
        assert!(wait > 800 && wait <= 901, "{wait}");
        // Another account from the same address is not locked yet.
        assert!(throttle.check("b@x.io", Some("1.2.3.4"), t0).is_ok());
        assert!(throttle.check("a@x.io", Some("1.2.3.4"), t0 + Duration::minutes(16)).is_ok());
    }
}
