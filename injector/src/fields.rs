//! The annotation value: a small YAML mapping of fields, read strictly.
//!
//! Values are YAML mappings, in flow style `{after: 10s, signal: SIGTERM}` or block style
//! (one `field: value` per line). Every scalar is read as text and interpreted by the field
//! that receives it, so `after: 30s`, `after: "30s"` and `after: '30s'` mean the same.
//! Refused outright: values over 16 KiB, more than one YAML document, anchors and aliases
//! (`&a` / `*a`), keys that are not plain names, a field given twice, mappings with more than
//! 32 fields, and any field the fault does not accept (the message lists the accepted ones).

use std::fmt;
use std::time::Duration;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::annotations::quote;
use crate::units::{self, Size, UnitError};

mod flow;
#[doc(hidden)]
pub use flow::fast_path_agrees;

/// Longest annotation value we parse, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Most fields one mapping may have.
const MAX_FIELDS: usize = 32;
/// Most items a sequence holds (`to:` of the network faults).
pub(crate) const MAX_ITEMS: usize = 256;

/// Why an annotation value (or one of its fields) is invalid. Displayed as the rejection reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The value is longer than [`MAX_VALUE_BYTES`].
    #[error("value is {0} bytes long; at most {MAX_VALUE_BYTES} bytes are accepted")]
    TooLong(usize),
    /// The value is empty.
    #[error("value is empty; write {{}} to accept every default")]
    Empty,
    /// The YAML parser refused the value.
    #[error("value is not valid YAML: {0}")]
    Yaml(String),
    /// More than one YAML document.
    #[error("value holds more than one YAML document")]
    MultipleDocuments,
    /// Anchors and aliases are refused (they allow exponential expansion).
    #[error("YAML anchors and aliases (&name, *name) are not supported")]
    Alias,
    /// The value (or a nested field) has the wrong YAML type.
    #[error("{what}: expected {expected}, found {found}")]
    Type {
        /// The field, or "value" for the whole annotation.
        what: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A mapping key that is not a plain scalar.
    #[error("mapping keys must be plain field names, found {0}")]
    BadKey(&'static str),
    /// A field given twice.
    #[error("field {0} is given twice")]
    Duplicate(String),
    /// Too many fields in one mapping.
    #[error("{0}: too many fields (at most {MAX_FIELDS})")]
    TooManyFields(String),
    /// A sequence is too long.
    #[error("a sequence has more than {MAX_ITEMS} items")]
    TooManyItems,
    /// A field this fault does not know.
    #[error("unknown field {} (accepted: {accepted})", quote(.field))]
    Unknown {
        /// The unknown field, full path (`cpu.wrokers`).
        field: String,
        /// The accepted fields, comma separated.
        accepted: String,
    },
    /// A required field is missing.
    #[error("{field} is required{hint}")]
    Missing {
        /// The missing field.
        field: String,
        /// Extra explanation, starting with a separator, or empty.
        hint: String,
    },
    /// A field's text is not valid for its unit.
    #[error("{field}: {} {source}", quote(.text))]
    Unit {
        /// The field.
        field: String,
        /// The offending text.
        text: String,
        /// Why.
        source: UnitError,
    },
    /// A field's text is not valid (other than units).
    #[error("{field}: {} {reason}", quote(.text))]
    Invalid {
        /// The field.
        field: String,
        /// The offending text.
        text: String,
        /// Why, completing "<text> ..." (e.g. "is not an integer").
        reason: String,
    },
    /// The combination of fields is refused.
    #[error("{0}")]
    Refused(String),
}

/// What a field holds: the reader the grammar uses for it, and how `ctl explain` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Kubernetes-style duration ([`Fields::duration`]).
    Duration,
    /// A size in bytes, or a share of the memory limit ([`Fields::size_at_most`]).
    Size,
    /// A fraction or a percentage ([`Fields::probability`]).
    Probability,
    /// A tc-style rate ([`Fields::rate`]).
    Rate,
    /// An integer in `min..=max` ([`Fields::integer`]).
    Integer {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A load percentage, 1 to 100.
    Percent,
    /// `true` or `false` ([`Fields::boolean`]).
    Boolean,
    /// A signal name or number.
    Signal,
    /// A network interface name.
    Interface,
    /// Free text ([`Fields::text`]).
    Text,
    /// A nested mapping with these fields.
    Mapping(&'static [FieldSpec]),
    /// A list of network targets ([`crate::faults::net::Target`]).
    Targets,
    /// `egress`, `ingress` or `both`.
    Direction,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldType::Duration => f.write_str("duration (250ms, 30s, 1h30m)"),
            FieldType::Size => f.write_str("size (256Mi, 1G, bytes, or 50% of the memory limit)"),
            FieldType::Probability => f.write_str("probability (0.25 or 25%)"),
            FieldType::Rate => f.write_str("rate (1mbit, 100kbit, 10kbps = bytes/s)"),
            FieldType::Integer { min, max } => write!(f, "integer ({min} to {max})"),
            FieldType::Percent => f.write_str("percentage (1 to 100, 80 or 80%)"),
            FieldType::Boolean => f.write_str("boolean (true or false)"),
            FieldType::Signal => f.write_str("signal (SIGTERM, TERM, sigterm, or a number)"),
            FieldType::Interface => f.write_str("interface name (eth0)"),
            FieldType::Text => f.write_str("text"),
            FieldType::Mapping(_) => f.write_str("mapping"),
            FieldType::Targets => {
                f.write_str("list of targets ([10.0.3.0/24:5432/tcp, [fd00::1]:80, 10.0.0.7])")
            }
            FieldType::Direction => f.write_str("egress, ingress or both"),
        }
    }
}

/// One field a fault value accepts: the grammar refuses every field not in its kind's table,
/// and `nri-chaos ctl explain` prints the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The field name.
    pub name: &'static str,
    /// What it holds.
    pub ty: FieldType,
    /// The default, in words (`-` when there is none).
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

impl FieldSpec {
    /// A field of type `ty`.
    pub const fn new(
        name: &'static str,
        ty: FieldType,
        default: &'static str,
        help: &'static str,
    ) -> FieldSpec {
        FieldSpec {
            name,
            ty,
            default,
            help,
        }
    }
}

/// The names of `specs`.
pub(crate) fn names(specs: &[FieldSpec]) -> Vec<&'static str> {
    specs.iter().map(|spec| spec.name).collect()
}

/// A parsed YAML node; scalars keep their text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `~`, `null`, or nothing.
    Null,
    /// Any scalar, as written.
    Scalar(String),
    /// A sequence (`to: [...]` of the network faults).
    Seq(Vec<Node>),
    /// A mapping, in written order.
    Map(Vec<(String, Node)>),
}

impl Node {
    fn kind(&self) -> String {
        match self {
            Node::Null => "nothing (null)".to_string(),
            Node::Scalar(s) => format!("the scalar {}", quote(s)),
            Node::Seq(_) => "a sequence".to_string(),
            Node::Map(_) => "a mapping".to_string(),
        }
    }
}

/// Builds a [`Node`] tree from parser events, without recursion and without aliases.
#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    error: Option<FieldError>,
}

#[derive(Debug)]
enum Frame {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(String, Node)>,
        key: Option<String>,
    },
}

impl Builder {
    fn fail(&mut self, e: FieldError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn insert(&mut self, node: Node, is_key_candidate: bool) {
        let mut err = None;
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    err = Some(FieldError::MultipleDocuments);
                } else {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items)) => {
                if items.len() >= MAX_ITEMS {
                    err = Some(FieldError::TooManyItems);
                } else {
                    items.push(node);
                }
            }
            Some(Frame::Map { entries, key }) => match key.take() {
                None => {
                    *key = Some(match node {
                        Node::Scalar(s) if is_key_candidate => s,
                        Node::Null => {
                            err = Some(FieldError::BadKey("an empty key"));
                            String::new()
                        }
                        _ => {
                            err = Some(FieldError::BadKey("a sequence or mapping"));
                            String::new()
                        }
                    });
                }
                Some(k) => {
                    if entries.iter().any(|(e, _)| *e == k) {
                        err = Some(FieldError::Duplicate(quote(&k)));
                    } else if entries.len() >= MAX_FIELDS {
                        err = Some(FieldError::TooManyFields("mapping".to_string()));
                    } else {
                        entries.push((k, node));
                    }
                }
            },
        }
        if let Some(e) = err {
            self.fail(e);
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(FieldError::MultipleDocuments);
                }
            }
            Event::Alias(_) => {
                self.fail(FieldError::Alias);
                self.insert(Node::Null, false);
            }
            Event::Scalar(text, style, anchor, _tag) => {
                if anchor > 0 {
                    self.fail(FieldError::Alias);
                }
                let node = if style == TScalarStyle::Plain
                    && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Node::Null
                } else {
                    Node::Scalar(text)
                };
                self.insert(node, true);
            }
            Event::SequenceStart(anchor, _) => {
                if anchor > 0 {
                    self.fail(FieldError::Alias);
                }
                self.stack.push(Frame::Seq(Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                if anchor > 0 {
                    self.fail(FieldError::Alias);
                }
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items)) = self.stack.pop() {
                    self.insert(Node::Seq(items), false);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { entries, .. }) = self.stack.pop() {
                    self.insert(Node::Map(entries), false);
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Parses an annotation value into its top-level mapping.
pub(crate) fn parse_value(value: &str) -> Result<Vec<(String, Node)>, FieldError> {
    if value.len() <= MAX_VALUE_BYTES {
        if let Some(entries) = flow::entries(value) {
            return Ok(entries);
        }
    }
    parse_yaml(value)
}

/// [`parse_value`] through the YAML parser.
fn parse_yaml(value: &str) -> Result<Vec<(String, Node)>, FieldError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(FieldError::TooLong(value.len()));
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(value);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(FieldError::Yaml(e.to_string()));
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    match builder.root {
        None | Some(Node::Null) => Err(FieldError::Empty),
        Some(Node::Map(entries)) => Ok(entries),
        Some(other) => Err(FieldError::Type {
            what: "value".to_string(),
            expected: "a YAML mapping such as {after: 10s}",
            found: other.kind(),
        }),
    }
}

/// The fields of one mapping, taken one by one by the code that understands them.
#[derive(Debug)]
pub(crate) struct Fields {
    /// Dotted path of this mapping (`""` at top level, `"cpu."` inside `cpu`).
    path: String,
    entries: Vec<(String, Node)>,
}

impl Fields {
    /// Wraps a mapping; `path` is the prefix for field names in messages (`""` or `"cpu."`).
    pub(crate) fn new(path: &str, entries: Vec<(String, Node)>) -> Self {
        Fields {
            path: path.to_string(),
            entries,
        }
    }

    /// The full name of field `name` for messages.
    pub(crate) fn name(&self, name: &str) -> String {
        format!("{}{name}", self.path)
    }

    /// Refuses any field outside the table `accepted`, listing the accepted ones.
    pub(crate) fn only_specs(&self, accepted: &[FieldSpec]) -> Result<(), FieldError> {
        self.only(&names(accepted))
    }

    /// Refuses any field outside `accepted`, listing the accepted ones.
    pub(crate) fn only(&self, accepted: &[&str]) -> Result<(), FieldError> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !accepted.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(FieldError::Unknown {
                field: self.name(k),
                accepted: accepted.join(", "),
            }),
        }
    }

    /// Whether `name` was given (null counts as given).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == name)
    }

    /// Removes and returns field `name`.
    fn take(&mut self, name: &str) -> Option<Node> {
        let i = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.swap_remove(i).1)
    }

    /// Field `name` as scalar text; `None` when absent.
    pub(crate) fn text(&mut self, name: &str) -> Result<Option<String>, FieldError> {
        match self.take(name) {
            None => Ok(None),
            Some(Node::Scalar(s)) => Ok(Some(s)),
            Some(other) => Err(FieldError::Type {
                what: self.name(name),
                expected: "a scalar",
                found: other.kind(),
            }),
        }
    }

    /// Field `name` as a sequence of scalars (a lone scalar is a one-item list); `None` when
    /// absent.
    pub(crate) fn list(&mut self, name: &str) -> Result<Option<Vec<String>>, FieldError> {
        let items = match self.take(name) {
            None => return Ok(None),
            Some(Node::Scalar(s)) => return Ok(Some(vec![s])),
            Some(Node::Seq(items)) => items,
            Some(other) => {
                return Err(FieldError::Type {
                    what: self.name(name),
                    expected: "a sequence such as [a, b]",
                    found: other.kind(),
                })
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Node::Scalar(s) => out.push(s),
                other => {
                    return Err(FieldError::Type {
                        what: format!("{}[{i}]", self.name(name)),
                        expected: "a scalar",
                        found: other.kind(),
                    })
                }
            }
        }
        Ok(Some(out))
    }

    /// Field `name` as a nested mapping; `None` when absent.
    pub(crate) fn mapping(&mut self, name: &str) -> Result<Option<Fields>, FieldError> {
        match self.take(name) {
            None => Ok(None),
            Some(Node::Map(entries)) => {
                Ok(Some(Fields::new(&format!("{}.", self.name(name)), entries)))
            }
            Some(other) => Err(FieldError::Type {
                what: self.name(name),
                expected: "a mapping such as {key: value}",
                found: other.kind(),
            }),
        }
    }

    fn unit<T>(
        &mut self,
        name: &str,
        parse: fn(&str) -> Result<T, UnitError>,
    ) -> Result<Option<T>, FieldError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        match parse(&text) {
            Ok(v) => Ok(Some(v)),
            Err(source) => Err(FieldError::Unit {
                field: self.name(name),
                text,
                source,
            }),
        }
    }

    /// Field `name` as a duration.
    pub(crate) fn duration(&mut self, name: &str) -> Result<Option<Duration>, FieldError> {
        self.unit(name, units::parse_duration)
    }

    /// Field `name` as a duration that must be above zero.
    pub(crate) fn positive_duration(&mut self, name: &str) -> Result<Option<Duration>, FieldError> {
        let d = self.duration(name)?;
        if d.is_some_and(|d| d.is_zero()) {
            return Err(FieldError::Invalid {
                field: self.name(name),
                text: "0".to_string(),
                reason: "is zero; it must be above zero".to_string(),
            });
        }
        Ok(d)
    }

    /// Field `name` as a size of at most `max` bytes (a percentage of the limit is always
    /// below it); `why` completes "is larger than " (the bound, and why).
    pub(crate) fn size_at_most(
        &mut self,
        name: &str,
        max: u64,
        why: &str,
    ) -> Result<Option<Size>, FieldError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        let size = units::parse_size(&text).map_err(|source| FieldError::Unit {
            field: self.name(name),
            text: text.clone(),
            source,
        })?;
        if matches!(size, Size::Bytes(b) if b > max) {
            return Err(FieldError::Invalid {
                field: self.name(name),
                text,
                reason: format!("is larger than {why}"),
            });
        }
        Ok(Some(size))
    }

    /// Field `name` as a probability (fraction in 0..=1).
    pub(crate) fn probability(&mut self, name: &str) -> Result<Option<f64>, FieldError> {
        self.unit(name, units::parse_probability)
    }

    /// Field `name` as a rate in bytes per second.
    pub(crate) fn rate(&mut self, name: &str) -> Result<Option<u64>, FieldError> {
        self.unit(name, units::parse_rate)
    }

    /// Field `name` as an integer in `min..=max`.
    pub(crate) fn integer(
        &mut self,
        name: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, FieldError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        let invalid = |reason: String| FieldError::Invalid {
            field: self.name(name),
            text: text.clone(),
            reason,
        };
        let digits = text.strip_prefix('+').unwrap_or(&text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!(
                "is not an integer (expected {min} to {max})"
            )));
        }
        match digits.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(invalid(format!(
                "is out of range (expected {min} to {max})"
            ))),
        }
    }

    /// Field `name` as a boolean (`true` / `false`).
    pub(crate) fn boolean(&mut self, name: &str) -> Result<Option<bool>, FieldError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        match text.as_str() {
            "true" | "True" | "TRUE" => Ok(Some(true)),
            "false" | "False" | "FALSE" => Ok(Some(false)),
            _ => Err(FieldError::Invalid {
                field: self.name(name),
                text,
                reason: "is not a boolean (expected true or false)".to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &str) -> Fields {
        Fields::new("", parse_value(v).unwrap())
    }

    #[test]
    fn flow_and_block_styles() {
        let flow = parse_value("{after: 2s, signal: SIGTERM}").unwrap();
        let block = parse_value("after: 2s\nsignal: SIGTERM\n").unwrap();
        assert_eq!(flow, block);
        assert_eq!(
            flow,
            vec![
                ("after".to_string(), Node::Scalar("2s".to_string())),
                ("signal".to_string(), Node::Scalar("SIGTERM".to_string())),
            ]
        );
        assert_eq!(parse_value("{}").unwrap(), vec![]);
        let nested = parse_value("cpu:\n  workers: 2\n").unwrap();
        assert!(matches!(&nested[0].1, Node::Map(m) if m.len() == 1));
    }

    #[test]
    fn quoting_does_not_matter() {
        let mut f = fields("{a: \"30s\", b: '30s', c: 30s}");
        let d = Some(Duration::from_secs(30));
        assert_eq!(f.duration("a").unwrap(), d);
        assert_eq!(f.duration("b").unwrap(), d);
        assert_eq!(f.duration("c").unwrap(), d);
    }

    #[test]
    fn refused_shapes() {
        let err = |v: &str| parse_value(v).unwrap_err();
        assert_eq!(err(""), FieldError::Empty);
        assert_eq!(err("   "), FieldError::Empty);
        assert_eq!(err("~"), FieldError::Empty);
        assert!(matches!(err("kill"), FieldError::Type { .. }));
        assert!(err("kill")
            .to_string()
            .contains("found the scalar \"kill\""));
        assert!(matches!(err("[1, 2]"), FieldError::Type { .. }));
        assert!(matches!(err("{a: 1"), FieldError::Yaml(_)));
        assert!(matches!(err("a: [1, 2"), FieldError::Yaml(_)));
        assert_eq!(
            err("{a: 1, a: 2}"),
            FieldError::Duplicate("\"a\"".to_string())
        );
        assert_eq!(err("a: &x 1\nb: *x"), FieldError::Alias);
        assert_eq!(err("{a: 1}\n---\n{b: 2}"), FieldError::MultipleDocuments);
        assert!(matches!(err("{[a]: 1}"), FieldError::BadKey(_)));
        assert!(matches!(err("{? {a: 1} : 1}"), FieldError::BadKey(_)));
        assert!(matches!(
            err(&"x".repeat(MAX_VALUE_BYTES + 1)),
            FieldError::TooLong(_)
        ));
        let many: Vec<String> = (0..40).map(|i| format!("f{i}: 1")).collect();
        assert!(matches!(
            err(&many.join("\n")),
            FieldError::TooManyFields(_)
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut inputs: Vec<String> = [
            "{",
            "}",
            "[",
            "]",
            ":",
            "::::",
            "- - -",
            "{a: {b: {c: [",
            "\u{0}",
            "\u{feff}{a: 1}",
            "{a: \u{202e}1s}",
            "{\u{1F4A5}: \u{1F4A5}}",
            "a: |\n  x\n b",
            "%YAML 1.2\n---\n{}",
            "!!binary aGVsbG8=",
            "{a: !!int x}",
            "'unterminated",
            "\"\\xZZ\"",
            "a:\tb",
            "? ? ?",
            "{after: 99999999999999999999999999999999999999999999999999h}",
            "---\n...\n---",
            "&a [*a]",
            "*a",
            "{a: *b}",
            "\t\t\t",
            "\r\n\r\n",
            "- a\n- b",
            "a: b: c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.push("[".repeat(5000));
        inputs.push("{a: ".repeat(3000));
        inputs.push(format!("{{{}}}", "a: 1, ".repeat(2000)));
        for input in &inputs {
            let _ = parse_value(input);
        }
    }

    #[test]
    fn typed_accessors() {
        let mut f = fields("{n: 5, big: 99999999999999999999999, neg: -1, word: five, b: true, c: False, d: yes, m: {x: 1}, s: [1], z: ~}");
        assert_eq!(f.integer("n", 1, 10).unwrap(), Some(5));
        assert!(f
            .integer("big", 0, 10)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(f
            .integer("neg", 0, 10)
            .unwrap_err()
            .to_string()
            .contains("\"-1\" is not an integer"));
        assert!(f
            .integer("word", 0, 10)
            .unwrap_err()
            .to_string()
            .contains("\"five\" is not an integer"));
        assert_eq!(f.boolean("b").unwrap(), Some(true));
        assert_eq!(f.boolean("c").unwrap(), Some(false));
        assert!(f
            .boolean("d")
            .unwrap_err()
            .to_string()
            .contains("\"yes\" is not a boolean"));
        assert!(f
            .text("m")
            .unwrap_err()
            .to_string()
            .contains("m: expected a scalar, found a mapping"));
        assert!(f
            .mapping("s")
            .unwrap_err()
            .to_string()
            .contains("found a sequence"));
        assert!(f
            .text("z")
            .unwrap_err()
            .to_string()
            .contains("found nothing (null)"));
        assert_eq!(f.text("absent").unwrap(), None);
    }

    #[test]
    fn unknown_fields_list_accepted() {
        let f = fields("{after: 1s, sginal: 9}");
        let e = f.only(&["after", "signal"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown field \"sginal\" (accepted: after, signal)"
        );
        let mut f = fields("{cpu: {wrokers: 1}}");
        let cpu = f.mapping("cpu").unwrap().unwrap();
        assert_eq!(
            cpu.only(&["workers", "load"]).unwrap_err().to_string(),
            "unknown field \"cpu.wrokers\" (accepted: workers, load)"
        );
    }
}
