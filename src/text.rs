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

/// A name from the input (a kubeconfig's context, cluster or user name, a ClusterPair's option
/// key) as a message may show it: as written when it looks like a name — lower-case letters,
/// digits and `.-_@:/`, at most 63 characters — and otherwise not at all. A ClusterPair is
/// written by hand and pasted; a token or a password put where a name goes must not travel on
/// in an answer, a log line or an Event.
pub fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'-' | b'_' | b'@' | b':' | b'/')
        });
    if looks_like_a_name {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Borrowed("(a name not shown)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_only_when_they_look_like_names() {
        for shown in [
            "default",
            "c-m-4kq8z9rt",
            "arn:aws:eks:us-east-1:123:cluster/prod",
            "u@x",
        ] {
            assert_eq!(shown_name(shown), shown);
        }
        for hidden in [
            "",
            "eyJhbGciOiJSUzI1NiJ9",
            "Pa55word!",
            "a b",
            &"x".repeat(64),
        ] {
            assert_eq!(shown_name(hidden), "(a name not shown)", "{hidden}");
        }
    }
}
