//! A string that must never reach a log line or an error message.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The only way to the value; grep for it when auditing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Splits a comma-separated list of secrets (several are active during a
/// rotation); blanks are dropped.
pub fn secret_list(s: &str) -> Vec<Secret> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_rotation_list_is_split_on_commas() {
        let list = secret_list(" new , old,,");
        assert_eq!(
            list.iter().map(Secret::expose).collect::<Vec<_>>(),
            vec!["new", "old"]
        );
    }
}
