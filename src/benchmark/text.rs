//! The string operations lm-eval's task definitions perform, with Python's semantics:
//! `str.isspace`/`strip` (which also treat U+001C..U+001F as whitespace), `str.capitalize`,
//! `re.split(r"\s+")`, hellaswag's `preprocess` and wikitext's detokenizer.

use std::sync::LazyLock;

use regex::{NoExpand, Regex};

/// Python's `str.isspace()` for one character (`\s` in `re` patterns on `str`).
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `str.lstrip()`.
pub fn py_lstrip(s: &str) -> &str {
    s.trim_start_matches(py_isspace)
}

/// Python's `str.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_isspace)
}

/// Python's `str.capitalize()`: the first character in title case (full mappings: `ß` → `Ss`,
/// `ﬅ` → `St`, `ᾳ` → `ᾼ`, Georgian Mkhedruli unchanged), the rest lower-cased in the
/// context of the whole string (a final `Σ` after the first letter becomes `ς`).
pub fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let mut out = title_case(first);
    // Lower-case the whole string so that the final-sigma rule sees the first character, then
    // drop what the first character became (at the start, `Σ` is never final: no context).
    let lower = s.to_lowercase();
    let first_lower: usize = first.to_lowercase().map(char::len_utf8).sum();
    out.push_str(&lower[first_lower..]);
    out
}

/// Title case of one character, from the Unicode character database (UnicodeData.txt's
/// titlecase mapping with SpecialCasing.txt's full mappings), which std does not expose.
fn title_case(c: char) -> String {
    let mapped = unicode_case_mapping::to_titlecase(c);
    if mapped == [0; 3] {
        return c.to_string();
    }
    mapped
        .iter()
        .take_while(|&&u| u != 0)
        .filter_map(|&u| char::from_u32(u))
        .collect()
}

/// `len(re.split(r"\s+", text))`: whitespace runs plus one (empty edge fields count).
pub fn count_words(text: &str) -> usize {
    let mut runs = 0;
    let mut in_space = false;
    for c in text.chars() {
        let space = py_isspace(c);
        if space && !in_space {
            runs += 1;
        }
        in_space = space;
    }
    runs + 1
}

/// Python's `\s` inside a regex character class.
const WS: &str = r"\s\x1c-\x1f";

fn regex(pattern: &str) -> Regex {
    Regex::new(&pattern.replace("{WS}", WS)).expect("static regex")
}

static BRACKETED: LazyLock<Regex> = LazyLock::new(|| regex(r"\[.*?\]"));

/// hellaswag's `preprocess`: strip, `" [title]"` → `". "`, drop `[...]` tags (non-greedy, not
/// across lines), then one pass of `"  "` → `" "`.
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = py_strip(text).replace(" [title]", ". ");
    let text = BRACKETED.replace_all(&text, "");
    text.replace("  ", " ")
}

struct Detokenizer {
    slash_digit: Regex,
    parens: Regex,
    brackets: Regex,
    braces: Regex,
    double_quotes: Regex,
    single_quotes: Regex,
}

static DETOKENIZER: LazyLock<Detokenizer> = LazyLock::new(|| Detokenizer {
    slash_digit: regex(r"/' [0-9]/"),
    parens: regex(r"\([{WS}]*([^\)]*?)[{WS}]*\)"),
    brackets: regex(r"\[[{WS}]*([^\]]*?)[{WS}]*\]"),
    braces: regex(r"\{[{WS}]*([^}]*?)[{WS}]*\}"),
    double_quotes: regex(r#""[{WS}]*([^"]*?)[{WS}]*""#),
    single_quotes: regex(r"'[{WS}]*([^']*?)[{WS}]*'"),
});

/// wikitext's `wikitext_detokenizer`, step for step (including its no-op `/' [0-9]/` rule).
pub fn wikitext_detokenize(page: &str) -> String {
    let d = &*DETOKENIZER;
    let mut s = page.replace("s '", "s'");
    s = d
        .slash_digit
        .replace_all(&s, NoExpand("/'[0-9]/"))
        .into_owned();
    for (from, to) in [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", ".")] {
        s = s.replace(from, to);
    }
    for (from, to) in [
        (" : ", ": "),
        (" ; ", "; "),
        (" . ", ". "),
        (" ! ", "! "),
        (" ? ", "? "),
        (" , ", ", "),
    ] {
        s = s.replace(from, to);
    }
    s = d.parens.replace_all(&s, "(${1})").into_owned();
    s = d.brackets.replace_all(&s, "[${1}]").into_owned();
    s = d.braces.replace_all(&s, "{${1}}").into_owned();
    s = d.double_quotes.replace_all(&s, "\"${1}\"").into_owned();
    s = d.single_quotes.replace_all(&s, "'${1}'").into_owned();
    for (from, to) in [("= = = =", "===="), ("= = =", "==="), ("= =", "==")] {
        s = s.replace(from, to);
    }
    s = s.replace(" \u{b0} ", "\u{b0}");
    s = s.replace(" \n", "\n").replace("\n ", "\n");
    s.replace(" N ", " 1 ").replace(" 's", "'s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_and_case() {
        assert_eq!(py_strip("\u{1f} a b\u{a0}\n"), "a b");
        assert_eq!(py_rstrip("ab \n"), "ab");
        assert_eq!(py_lstrip("\n\tab "), "ab ");
        assert_eq!(py_capitalize("then THE man"), "Then the man");
        assert_eq!(py_capitalize("él SALTA"), "Él salta");
        assert_eq!(py_capitalize("ǆemal"), "ǅemal");
        assert_eq!(py_capitalize(""), "");
    }

    /// Against Python's own `str.capitalize` (scripts/make_capitalize_fixture.py): every
    /// character whose title case is not its upper case, and context-dependent strings.
    #[test]
    fn capitalize_matches_python() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/text/capitalize.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() > 135, "{}", cases.len());
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|case| {
                let (input, python) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
                let ours = py_capitalize(input);
                (ours != python).then(|| format!("{input:?}: {ours:?}, Python {python:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn words_like_re_split() {
        assert_eq!(count_words(""), 1);
        assert_eq!(count_words(" a  b\n"), 4);
        assert_eq!(count_words("a b"), 2);
    }

    #[test]
    fn hellaswag_example_from_the_spec() {
        let text = "Home and Garden: [header] How to X [title] Do it. [step] Foo   bar";
        assert_eq!(
            hellaswag_preprocess(text),
            "Home and Garden: How to X. Do it. Foo  bar"
        );
    }

    #[test]
    fn wikitext_rules() {
        let page = " = = Title = = \n The cat 's ( big ) toy , 1 @,@ 000 \" x \" and N more . \n";
        assert_eq!(
            wikitext_detokenize(page),
            " == Title ==\nThe cat's (big) toy, 1,000 \"x\" and 1 more.\n"
        );
        assert_eq!(wikitext_detokenize("/' 5/"), "/'[0-9]/");
    }
}
