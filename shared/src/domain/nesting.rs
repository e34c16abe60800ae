//! How deep a JSON body nests, measured on the raw bytes before any parser
//! recurses into it: a hostile body of a million `[` must cost a linear
//! scan and a clear error, not a deep recursion.

/// Whether `body` nests arrays and objects deeper than `limit` (brackets
/// inside strings do not count). Stops at the first level past the limit.
pub fn deeper_than(body: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!deeper_than(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(deeper_than(br#"{"a":[1,{"b":[2]}]}"#, 3));
        assert!(!deeper_than(br#"{"a":"[[[[[[[[\"[[[["}"#, 1));
        let hostile = "[".repeat(1_000_000);
        assert!(deeper_than(hostile.as_bytes(), 32));
    }
}
