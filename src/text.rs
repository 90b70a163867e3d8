//! Bounded text for messages that travel (Events, warnings, audit annotations).

/// Cuts `s` to at most `max` bytes (on a character boundary), marking the cut with `…`.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let end = prefix(&s, max).len();
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The longest start of `s` of at most `max` bytes that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
