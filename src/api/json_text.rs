//! JSON text as a scanner that follows nesting and keys needs it, without parsing values: the
//! bytes outside strings one by one, and each string whole (its escapes skipped). Shared by the
//! embeddings answer check (`api::embeddings`) and the session history's cut
//! (`engine::session`), which look for a few keys in bodies they never parse.

/// One piece of JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// A byte outside any string (structure, a number's or a literal's byte, a blank).
    Byte(u8),
    /// A string: its content is `text[start..end]` (escapes as written); `closed` is false for a
    /// string the text ends inside.
    String {
        start: usize,
        end: usize,
        closed: bool,
    },
}

/// The pieces of `text`, each with the index it starts at.
pub fn pieces(text: &[u8]) -> Pieces<'_> {
    Pieces { text, at: 0 }
}

pub struct Pieces<'a> {
    text: &'a [u8],
    at: usize,
}

impl Iterator for Pieces<'_> {
    type Item = (usize, Piece);

    fn next(&mut self) -> Option<(usize, Piece)> {
        let i = self.at;
        let b = *self.text.get(i)?;
        if b != b'"' {
            self.at += 1;
            return Some((i, Piece::Byte(b)));
        }
        // To the closing quote: each backslash escapes the byte after it.
        let mut j = i + 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.text[j.min(self.text.len())..]) {
                None => {
                    self.at = self.text.len();
                    let end = self.text.len();
                    return Some((
                        i,
                        Piece::String {
                            start: i + 1,
                            end,
                            closed: false,
                        },
                    ));
                }
                Some(k) if self.text[j + k] == b'\\' => j += k + 2,
                Some(k) => {
                    self.at = j + k + 1;
                    let (start, end) = (i + 1, j + k);
                    return Some((
                        i,
                        Piece::String {
                            start,
                            end,
                            closed: true,
                        },
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_whole_and_escapes_do_not_end_them() {
        let text = br#"{"a\"}":[1, "x\\"],"b":"open"#;
        let got: Vec<(usize, Piece)> = pieces(text).collect();
        assert_eq!(got[0], (0, Piece::Byte(b'{')));
        assert_eq!(
            got[1],
            (
                1,
                Piece::String {
                    start: 2,
                    end: 6,
                    closed: true
                }
            )
        );
        assert_eq!(&text[2..6], br#"a\"}"#);
        let strings: Vec<&[u8]> = got
            .iter()
            .filter_map(|(_, p)| match *p {
                Piece::String { start, end, .. } => Some(&text[start..end]),
                Piece::Byte(_) => None,
            })
            .collect();
        assert_eq!(strings, [&br#"a\"}"#[..], br"x\\", b"b", b"open"]);
        assert!(matches!(
            got.last(),
            Some((_, Piece::String { closed: false, .. }))
        ));
        // A backslash at the very end escapes nothing and ends nothing.
        assert_eq!(pieces(br#""\"#).count(), 1);
    }
}
