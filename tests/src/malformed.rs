//! Malformed annotation values the tests send to the plugin.

/// The billion laughs in YAML flow style, one line (the plain log prints a value as
/// written): nine levels of anchors, each a list of ten aliases of the one before.
pub fn billion_laughs() -> String {
    let mut laughs = String::from("{a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!(", a{i}: &a{i} [{refs}]"));
    }
    laughs.push('}');
    laughs
}
