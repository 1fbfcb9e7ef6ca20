//! A plugin's `/metrics`, read back: one GET, the body parsed by prometheus-parse (a Prometheus
//! text format parser), figures looked up by family and labels, and quantiles estimated from
//! histogram buckets the way Prometheus' `histogram_quantile` does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The content type of the Prometheus text format the plugin serves.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// A scrape of one plugin.
#[derive(Debug, Clone)]
pub struct Metrics {
    scrape: Scrape,
    text: String,
}

/// `GET /metrics` from `address`; fails unless the answer is 200 in the text format.
pub async fn scrape(address: SocketAddr) -> Result<Metrics> {
    // One request with `Connection: close`, read to EOF: the server under test is hyper, and
    // the test checks the status line and content type itself; a client crate adds nothing.
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to the metrics endpoint {address}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .with_context(|| format!("metrics endpoint {address} did not answer in 5 s"))??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP head in the metrics response")?;
    ensure!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    ensure!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {TEXT_FORMAT}")),
        "{head}"
    );
    Metrics::parse(body)
}

impl Metrics {
    /// Parses exposition text.
    pub fn parse(text: &str) -> Result<Metrics> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .context("the metrics text does not parse")?;
        Ok(Metrics {
            scrape,
            text: text.to_string(),
        })
    }

    /// The text as served.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Families declared (`# HELP`), by exposed name.
    pub fn families(&self) -> BTreeSet<&str> {
        self.scrape.docs.keys().map(String::as_str).collect()
    }

    fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Result<&Sample> {
        self.scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .with_context(|| format!("no sample {name} with {labels:?} in\n{}", self.text))
    }

    /// The value of counter, gauge or untyped sample `name` with `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        match &self.sample(name, labels)?.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Ok(*v),
            other => bail!("{name} {labels:?} is not a single value: {other:?}"),
        }
    }

    /// Every value label `label` takes in family `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get(label).map(str::to_string))
            .collect()
    }

    /// Histogram `name` with `labels`: (upper bound, cumulative count) by bound, `+Inf` last.
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Result<Vec<(f64, f64)>> {
        let Value::Histogram(buckets) = &self.sample(name, labels)?.value else {
            bail!("{name} {labels:?} is not a histogram");
        };
        let mut buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(buckets)
    }

    /// Every series of histogram `name`, keyed by the value of `label`.
    pub fn histograms(&self, name: &str, label: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
        self.label_values(name, label)
            .into_iter()
            .filter_map(|value| {
                let buckets = self.buckets(name, &[(label, &value)]).ok()?;
                Some((value, buckets))
            })
            .collect()
    }
}

/// Adds `more` (same bounds) into `total`, bucket by bucket: histograms of several scrapes
/// (several plugin runs) as one.
pub fn add_buckets(total: &mut Vec<(f64, f64)>, more: &[(f64, f64)]) {
    if total.is_empty() {
        total.extend_from_slice(more);
        return;
    }
    for ((_, count), (_, extra)) in total.iter_mut().zip(more) {
        *count += extra;
    }
}

/// The `q` quantile (0..=1) of cumulative `buckets`, interpolated linearly inside the bucket
/// it falls in (Prometheus' `histogram_quantile`); the last finite bound when it falls in
/// `+Inf`; NaN without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return lower;
            }
            let inside = count - below;
            return if inside <= 0.0 {
                bound
            } else {
                lower + (bound - lower) * (rank - below) / inside
            };
        }
        (lower, below) = (bound, count);
    }
    lower
}

/// The smallest bucket bound every observation of cumulative `buckets` is under: an upper
/// bound of the largest observation (`+Inf` when one passed the last finite bound; NaN
/// without observations).
pub fn max_bound(buckets: &[(f64, f64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    buckets
        .iter()
        .find(|(_, count)| *count >= total)
        .map_or(f64::INFINITY, |(bound, _)| *bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{kind=\"kill\"} 2\nx_total{kind=\"oom\"} 0\n# HELP h Times.\n# TYPE h histogram\nh_bucket{event=\"a\",le=\"1\"} 2\nh_bucket{event=\"a\",le=\"2\"} 6\nh_bucket{event=\"a\",le=\"4\"} 10\nh_bucket{event=\"a\",le=\"+Inf\"} 10\nh_sum{event=\"a\"} 20\nh_count{event=\"a\"} 10\n";

    #[test]
    fn values_labels_and_buckets() {
        let m = Metrics::parse(TEXT).unwrap();
        assert_eq!(m.value("x_total", &[("kind", "kill")]).unwrap(), 2.0);
        assert!(m.value("x_total", &[("kind", "netem")]).is_err());
        assert_eq!(
            m.label_values("x_total", "kind"),
            BTreeSet::from(["kill".to_string(), "oom".to_string()])
        );
        assert_eq!(m.families(), BTreeSet::from(["h", "x_total"]));
        let b = m.buckets("h", &[("event", "a")]).unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(m.value("h_count", &[("event", "a")]).unwrap(), 10.0);
        // Every observation is under 4, not all under 2.
        assert_eq!(max_bound(&b), 4.0);
        assert_eq!(
            max_bound(&[(1.0, 1.0), (f64::INFINITY, 2.0)]),
            f64::INFINITY
        );
        assert!(max_bound(&[(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        // 5th of 10 falls in (1, 2] holding 4 of them, 3 past its start.
        assert!((quantile(0.5, &b) - 1.75).abs() < 1e-9);
        assert!((quantile(1.0, &b) - 4.0).abs() < 1e-9);
        let mut twice = Vec::new();
        add_buckets(&mut twice, &b);
        add_buckets(&mut twice, &b);
        assert_eq!(twice.last().unwrap().1, 20.0);
        assert!((quantile(0.5, &twice) - 1.75).abs() < 1e-9);
        assert!(quantile(0.5, &[(f64::INFINITY, 0.0)]).is_nan());
    }
}
