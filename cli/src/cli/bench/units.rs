//! Figures as a person reads them: three significant digits and a unit
//! with its prefix (`93.2 M msg/s`, `9.97 GB/s`, `50.4 µs`), and ratios as
//! how many times faster or slower.

/// `v` with three significant digits, for `0 <= v < 999.5` (`233`, `50.4`,
/// `9.97`).
fn sig3(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `v` scaled by powers of 1000 to the first of `prefixes` under which it
/// has at most three digits before the point; the digits and that prefix.
fn scaled(v: f64, prefixes: &[&'static str]) -> (String, &'static str) {
    if !v.is_finite() || v < 0.0 {
        return (format!("{v}"), prefixes.first().copied().unwrap_or(""));
    }
    let mut v = v;
    for (i, p) in prefixes.iter().enumerate() {
        if v < 999.5 || i + 1 == prefixes.len() {
            return (sig3(v), p);
        }
        v /= 1000.0;
    }
    (sig3(v), "")
}

/// Messages per second: `93.2 M msg/s`, `1.05 G msg/s`, `674 k msg/s`.
pub(super) fn msgs_per_s(v: f64) -> String {
    match scaled(v, &["", "k", "M", "G", "T"]) {
        (n, "") => format!("{n} msg/s"),
        (n, p) => format!("{n} {p} msg/s"),
    }
}

/// Bytes per second: `9.97 GB/s`, `850 MB/s`.
pub(super) fn bytes_per_s(v: f64) -> String {
    let (n, p) = scaled(v, &["", "k", "M", "G", "T"]);
    format!("{n} {p}B/s")
}

/// A duration given in nanoseconds: `233 ns`, `50.4 µs`, `1.20 ms`.
pub(super) fn nanos(v: f64) -> String {
    let (n, p) = scaled(v, &["ns", "µs", "ms", "s"]);
    format!("{n} {p}")
}

/// How shmring compares with a reference, from `speedup`, the factor by
/// which shmring is faster (above 1) or slower (below 1):
/// `1.49x slower`, `88.2x faster`, `same` within half a percent.
pub(super) fn versus(speedup: f64) -> String {
    if !speedup.is_finite() || speedup <= 0.0 {
        return "-".into();
    }
    if (0.995..1.005).contains(&speedup) {
        return "same".into();
    }
    let (factor, word) = if speedup > 1.0 {
        (speedup, "faster")
    } else {
        (1.0 / speedup, "slower")
    };
    if factor < 999.5 {
        format!("{}x {word}", sig3(factor))
    } else {
        format!("{factor:.0}x {word}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_three_significant_digits_and_a_prefix() {
        assert_eq!(msgs_per_s(93_214_387.0), "93.2 M msg/s");
        assert_eq!(msgs_per_s(549_657_647.0), "550 M msg/s");
        assert_eq!(msgs_per_s(1_050_000_000.0), "1.05 G msg/s");
        assert_eq!(msgs_per_s(673_998.0), "674 k msg/s");
        assert_eq!(msgs_per_s(2_066_182.0), "2.07 M msg/s");
        assert_eq!(msgs_per_s(999_700.0), "1.00 M msg/s");
        assert_eq!(msgs_per_s(12.0), "12.0 msg/s");
        assert_eq!(msgs_per_s(0.0), "0.00 msg/s");
        assert_eq!(bytes_per_s(9.97e9), "9.97 GB/s");
        assert_eq!(bytes_per_s(157.22e9), "157 GB/s");
        assert_eq!(bytes_per_s(12.1e9), "12.1 GB/s");
        assert_eq!(bytes_per_s(850e6), "850 MB/s");
    }

    #[test]
    fn durations_move_from_ns_to_us_ms_and_s() {
        assert_eq!(nanos(233.4), "233 ns");
        assert_eq!(nanos(9.0), "9.00 ns");
        assert_eq!(nanos(999.7), "1.00 µs");
        assert_eq!(nanos(50_408.0), "50.4 µs");
        assert_eq!(nanos(119_649.0), "120 µs");
        assert_eq!(nanos(1_204_000.0), "1.20 ms");
        assert_eq!(nanos(2.5e9), "2.50 s");
        assert_eq!(nanos(2.5e13), "25000 s");
    }

    #[test]
    fn ratios_say_faster_or_slower() {
        assert_eq!(versus(0.87), "1.15x slower");
        assert_eq!(versus(1.0 / 1.49), "1.49x slower");
        assert_eq!(versus(88.22), "88.2x faster");
        assert_eq!(versus(1.002), "same");
        assert_eq!(versus(1234.4), "1234x faster");
        assert_eq!(versus(0.0), "-");
        assert_eq!(versus(f64::NAN), "-");
    }

    #[test]
    fn odd_values_print_as_they_are() {
        assert_eq!(msgs_per_s(f64::NAN), "NaN msg/s");
        assert_eq!(nanos(-1.0), "-1 ns");
    }
}
