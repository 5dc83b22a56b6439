//! The benches' statistics, one definition each: a median, a percentile, a range. Values
//! that are not numbers (NaN: a round that measured no latency) are left out; with no value
//! left, each is NaN.

fn numbers(v: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// The middle value, or the mean of the two middle ones.
pub fn median(v: &[f64]) -> f64 {
    let s = numbers(v);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The `p`th percentile (0 to 100), nearest rank: the smallest value at or above which lie
/// no more than `100 - p` % of the values.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let s = numbers(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// The smallest and the largest value.
pub fn range(v: &[f64]) -> (f64, f64) {
    let s = numbers(v);
    match (s.first(), s.last()) {
        (Some(a), Some(b)) => (*a, *b),
        _ => (f64::NAN, f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_and_without_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0, 1.0]), 3.0);
        assert!(median(&[]).is_nan());
        assert!(median(&[f64::NAN]).is_nan());
    }

    #[test]
    fn percentile_is_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        // 42 flashes: the p95 is the third-highest.
        let v: Vec<f64> = (1..=42).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), 40.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn range_is_the_smallest_and_largest_number() {
        assert_eq!(range(&[2.0, f64::NAN, -1.0, 7.5]), (-1.0, 7.5));
        assert!(range(&[]).0.is_nan());
    }
}
