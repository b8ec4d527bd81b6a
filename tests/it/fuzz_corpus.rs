//! Replays the fuzz targets' checked-in seed corpus (`fuzz/seeds/<target>/`) — and any crash
//! artifacts under `fuzz/artifacts/` — through the same properties the fuzz targets check, on
//! the stable toolchain, so a fixed finding stays fixed.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                let data = std::fs::read(&path).unwrap();
                // The file as the fuzzer stored it, and the file as a stream split at every
                // point the selector byte can pick.
                for first in 0..=255u8 {
                    let mut input = vec![first];
                    input.extend_from_slice(&data);
                    check(&input);
                }
                check(&data);
                n += 1;
            }
        }
    }
    n
}

#[test]
fn sse_seeds() {
    assert!(replay("sse", qpsbench::fuzzing::sse) >= 2);
}

#[test]
fn http_response_seeds() {
    assert!(replay("http_response", qpsbench::fuzzing::http_response) >= 2);
}

#[test]
fn chunk_seeds() {
    assert!(replay("chunk", qpsbench::fuzzing::chunk) >= 6);
}

#[test]
fn prometheus_seeds() {
    assert!(replay("prometheus", qpsbench::fuzzing::prometheus) >= 2);
}

#[test]
fn messages_seeds() {
    assert!(replay("messages", qpsbench::fuzzing::messages) >= 6);
}

#[test]
fn responses_seeds() {
    assert!(replay("responses", qpsbench::fuzzing::responses) >= 6);
}
