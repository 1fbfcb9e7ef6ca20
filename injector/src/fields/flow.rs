//! The common annotation value, one flow mapping of plain names to plain words such as
//! `{after: 300ms, signal: SIGTERM}`, read without the YAML parser. It is a strict subset of
//! the grammar: whatever it does not recognise byte for byte (quotes, nesting, comments, a
//! key twice, `null`, odd spacing, ...) is left to the YAML parser, so every value gets the
//! same fields, and every error the same message, either way (`fast_path_agrees`, checked
//! by the unit tests and the `annotation_value` fuzz target).
// Hand-written: NRI's CreateContainer runs it with cold caches, where yaml-rust2's scanner,
// parser and event builder cost about 30 us for a two-field value and this costs about 2 us.

use super::{Node, MAX_FIELDS};

/// The entries of `value` when it is a flow mapping this reader recognises, else `None`
/// (the caller then parses it as YAML).
pub(super) fn entries(value: &str) -> Option<Vec<(String, Node)>> {
    let inner = value.strip_prefix('{')?.strip_suffix('}')?;
    let inner = inner.trim_start_matches(' ').trim_end_matches(' ');
    let mut entries: Vec<(String, Node)> = Vec::new();
    for field in inner.split(',') {
        let (name, word) = field.trim_matches(' ').split_once(": ")?;
        let word = word.trim_start_matches(' ');
        if !is_name(name) || !is_word(word) || entries.iter().any(|(n, _)| n == name) {
            return None;
        }
        if entries.len() >= MAX_FIELDS {
            return None;
        }
        entries.push((name.to_string(), Node::Scalar(word.to_string())));
    }
    Some(entries)
}

/// A field name: a lowercase ASCII letter, then lowercase letters, digits and `_`, and not
/// YAML's null word (a null key is refused by the parser's path).
fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name != "null"
}

/// A plain word: an ASCII letter or digit, then letters, digits, `.`, `_` and `%` (no YAML
/// indicator, no space), and not one of YAML's null words.
fn is_word(word: &str) -> bool {
    let mut bytes = word.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%'))
        && !matches!(word, "null" | "Null" | "NULL")
}

/// Whether this reader and the YAML parser read `value` the same (or this reader leaves it
/// to the parser). For the tests and the fuzz targets.
#[doc(hidden)]
pub fn fast_path_agrees(value: &str) -> bool {
    match entries(value) {
        None => true,
        Some(fast) => super::parse_yaml(value).is_ok_and(|parsed| parsed == fast),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(name: &str, word: &str) -> (String, Node) {
        (name.to_string(), Node::Scalar(word.to_string()))
    }

    #[test]
    fn reads_the_common_values_as_the_yaml_parser_does() {
        for (value, want) in [
            ("{after: 300ms}", vec![scalar("after", "300ms")]),
            (
                "{ after: 1h,every: 10s ,  signal: SIGTERM }",
                vec![
                    scalar("after", "1h"),
                    scalar("every", "10s"),
                    scalar("signal", "SIGTERM"),
                ],
            ),
            (
                "{percent: 50%, size: 1.5GiB, probability: 0.25}",
                vec![
                    scalar("percent", "50%"),
                    scalar("size", "1.5GiB"),
                    scalar("probability", "0.25"),
                ],
            ),
        ] {
            assert_eq!(entries(value), Some(want.clone()), "{value}");
            assert_eq!(super::super::parse_yaml(value), Ok(want), "{value}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_yaml_parser() {
        for value in [
            "{}",
            "{after:1s}",
            "{after : 1s}",
            "{after: 1s,}",
            "{after: 1s, after: 2s}",
            "{after: null}",
            "{after: ~}",
            "{after: '1s'}",
            "{after: \"1s\"}",
            "{after: -1s}",
            "{after: 1s #x}",
            "{after: [1s]}",
            "{after: {a: 1}}",
            "{After: 1s}",
            "{after: 1s}\n",
            " {after: 1s}",
            "after: 1s",
            "{after: &a 1s}",
            "{after: 1 s}",
            "{after: 1s:2}",
        ] {
            assert_eq!(entries(value), None, "{value:?}");
        }
        let many = (0..=MAX_FIELDS)
            .map(|i| format!("f{i}: 1"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(entries(&format!("{{{many}}}")), None);
    }

    #[test]
    fn agrees_with_the_yaml_parser_on_the_fuzz_seeds() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/annotation_value"
        );
        let mut taken = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let value = text
                .split_once('\n')
                .map_or(text.as_str(), |(_, value)| value);
            assert!(fast_path_agrees(value), "{value:?}");
            taken += usize::from(entries(value).is_some());
        }
        assert!(taken > 0, "no seed of {dir} is a common flow mapping");
    }

    /// Values of one or two fields built from names, separators and words around what the
    /// reader accepts are read the same by both (a bounded differential search; the fuzz
    /// target `annotation_value` goes further).
    #[test]
    fn agrees_with_the_yaml_parser_on_generated_values() {
        let names = ["a", "ab_1", "A", "null", "1a", "", "a-b"];
        let colons = [": ", ":", " : ", ":  ", ":\t"];
        let words = [
            "1s", "50%", "1.5", "null", "~", "-1", "'1s'", "1 s", "a#b", "a #b", "[1]", "x:y",
            "Null", "", "a,b", "1s ", "&a b", "!t x", "{}", "y.",
        ];
        let commas = [",", ", ", " ,", ",,", ",\n"];
        let mut checked = 0;
        let mut check = |value: String| {
            assert!(fast_path_agrees(&value), "{value:?}");
            checked += 1;
        };
        for (open, close) in [("{", "}"), ("{ ", " }"), ("{", "}\n"), ("[", "]")] {
            for name in names {
                for colon in colons {
                    for word in words {
                        let first = format!("{name}{colon}{word}");
                        check(format!("{open}{first}{close}"));
                        for comma in commas {
                            for second in ["b", "a"] {
                                for word in words {
                                    check(format!("{open}{first}{comma}{second}: {word}{close}"));
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }
}
