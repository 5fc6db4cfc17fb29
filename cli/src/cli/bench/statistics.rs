//! Statistics of the bench: percentiles of round-trip samples, medians
//! of per-round throughputs.

use serde::Serialize;

#[derive(Serialize, Clone, Debug, Default)]
pub(super) struct Percentiles {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) p999: f64,
    /// The mean: the time per round trip over the measured window (what a
    /// p50 hides when a few round trips wait out time slices).
    pub(super) mean: f64,
    pub(super) samples: usize,
    /// (nines, ns) points of the distribution for `--plot`, where nines is
    /// -log10(1 - quantile).
    #[serde(skip)]
    pub(super) curve: Vec<(f64, f64)>,
}

pub(super) fn percentiles(mut v: Vec<u64>) -> Percentiles {
    v.sort_unstable();
    if v.is_empty() {
        return Percentiles::default();
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64;
    // The plot runs to the last quantile the samples resolve.
    let max_nines = (v.len() as f64).log10().clamp(0.0, 6.0);
    let curve = (0..=240)
        .map(|i| {
            let nines = max_nines * f64::from(i) / 240.0;
            (nines, at(1.0 - 10f64.powf(-nines)))
        })
        .collect();
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        mean: v.iter().map(|&s| s as f64).sum::<f64>() / v.len() as f64,
        samples: v.len(),
        curve,
    }
}

/// The median of a non-empty list (the lower middle for an even count).
pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}
