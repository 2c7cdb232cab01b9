//! Redis's `stringmatchlen`, ported line for line: KEYS, SCAN MATCH, PSUBSCRIBE, CONFIG GET and
//! ACL patterns must match exactly the same strings as in Redis (classes, ranges, escapes,
//! nocase, and the recursion guard against abusive patterns).

pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, nocase, &mut skip_longer, 0)
}

fn match_impl(pat: &[u8], s: &[u8], nocase: bool, skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    let fold = |c: u8| if nocase { c.to_ascii_lowercase() } else { c };
    let (mut p, mut i) = (0usize, 0usize);
    let pat_at = |k: usize| pat.get(k).copied().unwrap_or(0);
    while p < pat.len() && i < s.len() {
        match pat[p] {
            b'*' => {
                while p + 1 < pat.len() && pat[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == pat.len() {
                    return true;
                }
                while i < s.len() {
                    if match_impl(&pat[p + 1..], &s[i..], nocase, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    i += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => i += 1,
            b'[' => {
                p += 1;
                let negate = pat_at(p) == b'^';
                if negate {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    if pat_at(p) == b'\\' && pat.len() - p >= 2 {
                        p += 1;
                        if pat[p] == s[i] {
                            matched = true;
                        }
                    } else if p < pat.len() && pat[p] == b']' {
                        break;
                    } else if p >= pat.len() {
                        p -= 1;
                        break;
                    } else if pat.len() - p >= 3 && pat[p + 1] == b'-' {
                        let (mut start, mut end) = (pat[p], pat[p + 2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        let c = fold(s[i]);
                        p += 2;
                        if c >= fold(start) && c <= fold(end) {
                            matched = true;
                        }
                    } else if fold(pat[p]) == fold(s[i]) {
                        matched = true;
                    }
                    p += 1;
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                i += 1;
            }
            c => {
                let c = if c == b'\\' && pat.len() - p >= 2 {
                    p += 1;
                    pat[p]
                } else {
                    c
                };
                if fold(c) != fold(s[i]) {
                    return false;
                }
                i += 1;
            }
        }
        p += 1;
        if i == s.len() {
            while p < pat.len() && pat[p] == b'*' {
                p += 1;
            }
            break;
        }
    }
    p == pat.len() && i == s.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes(), false)
    }

    #[test]
    fn matches_like_stringmatchlen() {
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(m("h\\*llo", "h*llo"));
        assert!(!m("h\\*llo", "hello"));
        assert!(m("foo*", "foo"));
        assert!(!m("a*b", "acd"));
        assert!(m("[abc", "a"));
        assert!(glob_match(b"HELLO", b"hello", true));
        assert!(!m("a*a*a*a*a*a*a*a*a*a*a*b", &"a".repeat(60)));
    }
}
