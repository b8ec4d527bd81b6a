//! The per-second timeline (`timeline.jsonl`): one line per level and second, whose rows add up
//! exactly to the level's totals, failures by category included.

use crate::common::*;

#[test]
fn timeline_rows_add_up_to_each_levels_totals() {
    let _g = serial();
    // Five streams at most: the faster level gets HTTP 503s, so failures have a category.
    let mock = Mock::start(&[
        "--ttft-ms",
        "20",
        "--itl-ms",
        "2",
        "--output-tokens",
        "8",
        "--max-concurrency",
        "5",
    ]);
    let tmp = TempDir::new("timeline");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "20,150",
        "--duration",
        "2",
        "--continuous-usage",
        "off",
        "--plot",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let text = std::fs::read_to_string(run.dir.as_ref().unwrap().join("timeline.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let levels = run.levels();
    assert_eq!(levels.len(), 2);
    for (i, l) in levels.iter().enumerate() {
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| r["level"] == i + 1).collect();
        // A 2 s window: seconds 0, 1, and the last arrival's (at 2.0 s) or a straggler's.
        assert!((2..=4).contains(&mine.len()), "{mine:?}");
        let sum = |k: &str| mine.iter().map(|r| r[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!(sum("sent"), l["total_requests"].as_u64().unwrap(), "{l}");
        assert_eq!(sum("ok"), l["successful_requests"].as_u64().unwrap(), "{l}");
        assert_eq!(
            sum("output_tokens"),
            l["output_tokens_total"].as_u64().unwrap()
        );
        let mut failed = std::collections::BTreeMap::<String, u64>::new();
        for r in &mine {
            for (k, v) in r["failed"].as_object().unwrap() {
                *failed.entry(k.clone()).or_default() += v.as_u64().unwrap();
            }
        }
        let errors: std::collections::BTreeMap<String, u64> = l["errors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(failed, errors, "{l}");
        // Seconds in order from 0; nothing is left in flight at the end.
        for (t, r) in mine.iter().enumerate() {
            assert_eq!(r["t_s"], t);
        }
        assert_eq!(mine.last().unwrap()["in_flight"], 0);
        assert!(
            mine[0]["ttft_p50"].as_f64().unwrap() >= 0.02,
            "{:?}",
            mine[0]
        );
    }
    assert!(levels[1]["errors"]["HTTP 503"].as_u64().unwrap() > 0);

    // timeline.png: one strip per level, each with its lines drawn; `plot DIR` redraws it.
    let dir = run.dir.clone().unwrap();
    let png = dir.join("timeline.png");
    assert!(png.exists(), "{}\n{}", run.stdout, run.stderr);
    check_strips(&png, 2);
    std::fs::remove_file(&png).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("plot")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_strips(&png, 2);
}

/// The picture is a PNG of `levels` strips, and inside each strip the rate lines' and the TTFT
/// lines' colors appear (plotted pixels, not just axes on a white background). Each pair of lines
/// counts together: where an endpoint completes each second what was sent in it, the completed
/// line is drawn over the sent one (and the p99 over a p50 equal to it).
fn check_strips(png: &std::path::Path, levels: usize) {
    use qpsbench::report::timeline_plot::{height, strip_rows, DONE, SENT, TTFT_P50, TTFT_P99};
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(img.height(), height(levels));
    let rgb = |c: plotters::style::RGBColor| [c.0, c.1, c.2];
    for i in 0..levels {
        for colors in [[rgb(SENT), rgb(DONE)], [rgb(TTFT_P50), rgb(TTFT_P99)]] {
            let n = strip_rows(i)
                .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
                .filter(|&(x, y)| colors.contains(&img.get_pixel(x, y).0))
                .count();
            assert!(n > 100, "strip {i}: only {n} pixels of {colors:?}");
        }
    }
}
