//! A request rate as every output writes it: the table, the summary, the PNG, the progress line
//! and the `--qps auto` search's messages all use [`text`], so one level has one label.

/// A rate rounded to what the capacity search and the labels keep: 0.01 QPS from 0.1 QPS up,
/// three significant digits below (a search that steps down keeps its levels apart).
pub fn round(q: f64) -> f64 {
    if !q.is_finite() || q <= 0.0 {
        return q;
    }
    let scale = if q >= 0.1 {
        100.0
    } else {
        10f64.powi(2 - q.log10().floor() as i32)
    };
    (q * scale).round() / scale
}

/// `5.0`, `2.13`, `0.0625`: the rate with one decimal as the spec's table writes it (`QPS 20.0 -
/// Errors`), or as many more as it has, up to 4 (enough to tell apart any two levels of one
/// run, whose rates the search keeps to 3 significant digits).
pub fn text(q: f64) -> String {
    let r = (q * 1e4).round() / 1e4;
    if r.fract() == 0.0 && r.abs() < 1e15 {
        format!("{r:.1}")
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_per_rate() {
        assert_eq!(text(5.0), "5.0");
        assert_eq!(text(2.13), "2.13");
        assert_eq!(text(0.0625), "0.0625");
        assert_eq!(text(1.0 / 3.0), "0.3333");
        assert_eq!(round(2.134), 2.13);
        assert_eq!(round(0.0625), 0.0625);
        assert_eq!(round(0.03125), 0.0313);
    }
}
