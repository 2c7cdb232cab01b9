//! Redis's `sdssplitargs`: splits an inline request or a redis.conf line into arguments,
//! honouring "double quotes" (with \n \r \t \b \a \\ \" and \xHH escapes) and 'single quotes'.
//! Written by hand because inline commands and config files must split exactly as Redis does.

/// Returns `None` on unbalanced quotes, or a closing quote not followed by a space.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut p = 0;
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    loop {
        while p < line.len() && at(p).is_ascii_whitespace() {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = at(p);
            if in_double {
                if c == b'\\'
                    && at(p + 1) == b'x'
                    && at(p + 2).is_ascii_hexdigit()
                    && at(p + 3).is_ascii_hexdigit()
                {
                    current.push(hex_value(at(p + 2)) * 16 + hex_value(at(p + 3)));
                    p += 3;
                } else if c == b'\\' && p + 1 < line.len() {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if p + 1 < line.len() && !at(p + 1).is_ascii_whitespace() {
                        return None;
                    }
                    p += 1;
                    break;
                } else if p >= line.len() {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if p + 1 < line.len() && !at(p + 1).is_ascii_whitespace() {
                        return None;
                    }
                    p += 1;
                    break;
                } else if p >= line.len() {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    _ if p >= line.len() => break,
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        p += 1;
                        break;
                    }
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(c),
                }
            }
            p += 1;
        }
        args.push(current);
    }
}

fn hex_value(c: u8) -> u8 {
    (c as char).to_digit(16).unwrap_or(0) as u8
}

#[cfg(test)]
mod tests {
    use super::split_args;

    fn split(s: &str) -> Option<Vec<String>> {
        split_args(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|a| String::from_utf8(a).unwrap())
                .collect()
        })
    }

    #[test]
    fn splits_plain_and_quoted_words() {
        assert_eq!(split("set  a b").unwrap(), ["set", "a", "b"]);
        assert_eq!(split("set \"a b\" 'c d'").unwrap(), ["set", "a b", "c d"]);
        assert_eq!(split("x \"\\x41\\n\"").unwrap(), ["x", "A\n"]);
        assert_eq!(split("x 'it\\'s'").unwrap(), ["x", "it's"]);
        assert_eq!(split("save \"\"").unwrap(), ["save", ""]);
        assert!(split("   ").unwrap().is_empty());
    }

    #[test]
    fn rejects_unbalanced_quotes() {
        assert_eq!(split("set \"a"), None);
        assert_eq!(split("set 'a"), None);
        assert_eq!(split("set \"\"\"test-key\"\"\" v"), None);
    }
}
