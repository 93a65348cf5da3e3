//! The control planes a replica follows. Any of them serves the same snapshots, keys and
//! credentials (they share one database), so a replica keeps using the one that answered last
//! and moves to the next when it fails: a control plane that dies costs one failed request.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct ControlPlanes {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl ControlPlanes {
    /// From a comma-separated list of base URLs (one is fine).
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut urls = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = url::Url::parse(part).map_err(|e| anyhow::anyhow!("control plane URL {part:?}: {e}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "control plane URL {part:?}: only http and https are followed"
            );
            urls.push(part.trim_end_matches('/').to_owned());
        }
        anyhow::ensure!(!urls.is_empty(), "no control plane URL given");
        Ok(Self { urls, current: AtomicUsize::new(0) })
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The control plane in use: its index (for [`ControlPlanes::failed`]) and base URL.
    pub fn current(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::Acquire) % self.urls.len();
        (i, &self.urls[i])
    }

    /// The control plane at `index` failed: move on to the next, unless another caller
    /// already has.
    pub fn failed(&self, index: usize) {
        let next = (index + 1) % self.urls.len();
        if self.current.compare_exchange(index, next, Ordering::AcqRel, Ordering::Acquire).is_ok() && next != index {
            tracing::warn!(failed = %self.urls[index], next = %self.urls[next], "moving to the next control plane");
        }
    }

    /// Runs `call` against the control plane in use, then against each of the others in turn
    /// until one succeeds; the last error when none does.
    pub async fn try_each<T, E, F, Fut>(&self, mut call: F) -> Result<T, E>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut attempt = 0;
        loop {
            let (index, base) = self.current();
            match call(base.to_owned()).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    attempt += 1;
                    if attempt >= self.urls.len() {
                        return Err(e);
                    }
                    self.failed(index);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_split_trimmed_and_checked() {
        let planes = ControlPlanes::parse(" http://a:1/ , https://b:2").unwrap();
        assert_eq!(planes.len(), 2);
        assert_eq!(planes.current(), (0, "http://a:1"));
        assert!(ControlPlanes::parse(" , ").is_err());
        assert!(ControlPlanes::parse("ftp://a").is_err());
    }

    #[test]
    fn a_failure_moves_to_the_next_and_wraps_around() {
        let planes = ControlPlanes::parse("http://a,http://b").unwrap();
        planes.failed(0);
        assert_eq!(planes.current().1, "http://b");
        // A stale report about `a` does not move past `b`.
        planes.failed(0);
        assert_eq!(planes.current().1, "http://b");
        planes.failed(1);
        assert_eq!(planes.current().1, "http://a");
    }

    #[tokio::test]
    async fn try_each_stops_at_the_first_that_answers() {
        let planes = ControlPlanes::parse("http://a,http://b,http://c").unwrap();
        let mut asked = Vec::new();
        let got: Result<&str, &str> = planes
            .try_each(|base| {
                asked.push(base.clone());
                async move {
                    if base == "http://b" {
                        Ok("b")
                    } else {
                        Err("down")
                    }
                }
            })
            .await;
        assert_eq!(got, Ok("b"));
        assert_eq!(asked, ["http://a", "http://b"]);
        assert_eq!(planes.current().1, "http://b");
    }
}
