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

    /// Takes one attempt, or `Err(seconds)` until one may be tried again. The attempt counts
    /// as a failure from this moment (so concurrent guesses cannot all slip under the limit
    /// while the first is still being checked) until [`Self::succeeded`] gives it back.
    pub fn reserve(&self, email: &str, address: Option<&str>, now: DateTime<Utc>) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = 0i64;
        for (key, factor) in Self::keys(email, address) {
            if let Some(times) = map.get_mut(&key) {
                while times.front().is_some_and(|t| *t <= now - self.window) {
                    times.pop_front();
                }
                if times.len() >= self.max_failures * factor {
                    if let Some(oldest) = times.front() {
                        wait = wait.max((*oldest + self.window - now).num_seconds().max(0) + 1);
                    }
                }
            }
        }
        if wait > 0 {
            return Err(wait as u64);
        }
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, times| times.back().is_some_and(|t| *t > now - window));
        }
        for (key, _) in Self::keys(email, address) {
            map.entry(key).or_default().push_back(now);
        }
        Ok(())
    }

    /// The attempt reserved at `at` was right: the account's failures are cleared and the
    /// address gets its attempt back.
    pub fn succeeded(&self, email: &str, address: Option<&str>, at: DateTime<Utc>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("account:{email}"));
        let [_, (address_key, _)] = Self::keys(email, address);
        if let Some(times) = map.get_mut(&address_key) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
        }
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
            assert!(throttle.reserve("a@x.io", Some("1.2.3.4"), t0).is_ok());
        }
        let wait = throttle.reserve("a@x.io", Some("1.2.3.4"), t0).unwrap_err();
        assert!(wait > 800 && wait <= 901, "{wait}");
        // Another account from the same address is not locked yet.
        assert!(throttle.reserve("b@x.io", Some("1.2.3.4"), t0).is_ok());
        assert!(throttle.reserve("a@x.io", Some("1.2.3.4"), t0 + Duration::minutes(16)).is_ok());
    }

    #[test]
    fn a_success_gives_the_attempt_back() {
        let throttle = LoginThrottle::new(2, Duration::minutes(15));
        let t0 = Utc::now();
        for i in 0..10 {
            let at = t0 + Duration::seconds(i);
            assert!(throttle.reserve("a@x.io", Some("1.2.3.4"), at).is_ok(), "attempt {i}");
            throttle.succeeded("a@x.io", Some("1.2.3.4"), at);
        }
    }
}
