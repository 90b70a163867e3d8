//! Rancher project-ID values (docs/behaviour.md): `P` (project form) or `C:P` (cluster form).

use std::fmt;

/// A parsed project-ID value, borrowed from the text it was read from (a table of 100,000
/// entries is parsed without an allocation per value). Both parts are DNS-1123 labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProjectValue<'a> {
    /// The cluster part of the `C:P` form; `None` for the bare `P` form.
    pub cluster: Option<&'a str>,
    pub project: &'a str,
}

/// Why a string is not a project-ID value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value (or one of its parts) is empty.
    #[error("an empty ID part")]
    Empty,
    /// A part is longer than a DNS-1123 label may be.
    #[error("{} is longer than 63 characters", super::error::quoted_or(.0, "a part"))]
    TooLong(String),
    /// A part holds characters a DNS-1123 label may not.
    #[error("{} is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)", super::error::quoted_or(.0, "a part"))]
    NotALabel(String),
    /// More than one `:`.
    #[error("more than one ':' (expected P or C:P)")]
    TooManyColons,
}

/// Checks one DNS-1123 label: `[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`.
pub fn check_label(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > 63 {
        return Err(IdError::TooLong(s.to_string()));
    }
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&c| alnum(c) || c == b'-');
    match ok {
        true => Ok(()),
        false => Err(IdError::NotALabel(s.to_string())),
    }
}

impl<'a> ProjectValue<'a> {
    /// Parses `P` or `C:P`.
    pub fn parse(s: &'a str) -> Result<Self, IdError> {
        let (cluster, project) = match s.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err(IdError::TooManyColons),
            Some((c, p)) => (Some(c), p),
            None => (None, s),
        };
        cluster.map_or(Ok(()), check_label)?;
        check_label(project)?;
        Ok(Self { cluster, project })
    }
}

impl fmt::Display for ProjectValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cluster {
            Some(c) => write!(f, "{c}:{}", self.project),
            None => f.write_str(self.project),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::project("p-ab12c", None, "p-ab12c")]
    #[case::cluster("c-m-4kq8z9rt:p-7xk2q", Some("c-m-4kq8z9rt"), "p-7xk2q")]
    #[case::local("local:p-x", Some("local"), "p-x")]
    #[case::single_char("a", None, "a")]
    #[case::longest(&"a".repeat(63), None, &"a".repeat(63))]
    fn parses_valid(#[case] s: &str, #[case] cluster: Option<&str>, #[case] project: &str) {
        let v = ProjectValue::parse(s).unwrap();
        assert_eq!(v.cluster, cluster);
        assert_eq!(v.project, project);
        assert_eq!(v.to_string(), s);
    }

    #[rstest]
    #[case::empty("", IdError::Empty)]
    #[case::empty_cluster(":p-a", IdError::Empty)]
    #[case::empty_project("c-1:", IdError::Empty)]
    #[case::upper("P-A", IdError::NotALabel("P-A".into()))]
    #[case::leading_dash("-pa", IdError::NotALabel("-pa".into()))]
    #[case::trailing_dash("pa-", IdError::NotALabel("pa-".into()))]
    #[case::underscore("p_a", IdError::NotALabel("p_a".into()))]
    #[case::two_colons("a:b:c", IdError::TooManyColons)]
    #[case::too_long(&"a".repeat(64), IdError::TooLong("a".repeat(64)))]
    fn rejects_invalid(#[case] s: &str, #[case] err: IdError) {
        assert_eq!(ProjectValue::parse(s), Err(err));
    }
}
