"""Write tests/fixtures/text/capitalize.json: Python's `str.capitalize()` (hellaswag's
`ctx_b.capitalize()`) on the characters where it differs from upper-casing the first
character (title case != upper case: ligatures, digraphs, Greek with iota subscript, Georgian
Mkhedruli, ...), and on a few strings where lower-casing the rest depends on context (final
sigma). The Rust test (src/benchmark/text.rs) compares `py_capitalize` with these values; it
never runs Python.

Run from the repo root:   /work/venv/bin/python scripts/make_capitalize_fixture.py
"""
import json, sys, unicodedata

chars = [chr(c) for c in range(sys.maxunicode + 1)
         if not 0xD800 <= c <= 0xDFFF and chr(c).capitalize() != chr(c).upper()]
strings = ["then THE man", "aΣ", "ΣΑΣ", "ΑΣ ΣΑΣ.", "ΣΑ", "ǆEMAL", "ﬅOP ﬀ", "ᾳΣ", "İSTANBUL", "ßA",
           "ŉ", "\u10d0\u10d1", "a\u0345Σ", "Σ", "1ΣΑΣ", "", "x"]
cases = [[c, c.capitalize()] for c in chars] + [[s, s.capitalize()] for s in strings]
out = {"python": sys.version.split()[0], "unicode": unicodedata.unidata_version,
       "title_differs_from_upper": len(chars), "cases": cases}
with open("tests/fixtures/text/capitalize.json", "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=0)
    f.write("\n")
print(f"{len(chars)} characters, {len(strings)} strings (Python {out['python']}, Unicode {out['unicode']})")
