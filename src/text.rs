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
    let mut end = max.min(s.len());
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
pub fn shown_name(name: &str) -> &str {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'-' | b'_' | b'@' | b':' | b'/')
        });
    if looks_like_a_name {
        name
    } else {
        "(a name not shown)"
    }
}

/// The known name closest to `given` when it is close enough to be a misspelling of it: an
/// edit distance (ignoring case) of at most a third of the known name's length, and at least 1
/// allowed. `None` when nothing is that close: a suggestion far from what was written misleads.
pub fn nearest<'k>(given: &str, known: &[&'k str]) -> Option<&'k str> {
    let given = given.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::levenshtein(&given, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_get_the_nearest_known_name_and_strangers_none() {
        let known = ["config", "options", "platformOptions"];
        assert_eq!(nearest("platformOption", &known), Some("platformOptions"));
        assert_eq!(nearest("PlatformOptions", &known), Some("platformOptions"));
        assert_eq!(nearest("platfromOptions", &known), Some("platformOptions"));
        assert_eq!(nearest("option", &known), Some("options"));
        assert_eq!(nearest("confg", &known), Some("config"));
        assert_eq!(nearest("status", &known), None);
        assert_eq!(nearest("rancher", &known), None);
        assert_eq!(nearest("rancer", &["rancher"]), Some("rancher"));
        assert_eq!(
            nearest("projectMapings", &["projectMappings"]),
            Some("projectMappings")
        );
        assert_eq!(nearest("mappings", &["projectMappings"]), None);
        assert_eq!(nearest("", &["rancher"]), None);
        assert_eq!(strsim::levenshtein("kitten", "sitting"), 3);
        assert_eq!(strsim::levenshtein("", "abc"), 3);
    }

    #[rstest::rstest]
    #[case("default", true)]
    #[case("c-m-4kq8z9rt", true)]
    #[case("arn:aws:eks:us-east-1:123:cluster/prod", true)]
    #[case("u@x", true)]
    #[case("", false)]
    #[case("eyJhbGciOiJSUzI1NiJ9", false)]
    #[case("Pa55word!", false)]
    #[case("a b", false)]
    #[case(&"x".repeat(64), false)]
    fn names_are_shown_only_when_they_look_like_names(#[case] name: &str, #[case] shown: bool) {
        let expected = if shown { name } else { "(a name not shown)" };
        assert_eq!(shown_name(name), expected, "{name}");
    }
}
