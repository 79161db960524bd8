//! The one grammar of settings, and the canonical label that parses back to the same setting.
//!
//! ```text
//! SETTING = "base" | TERM ("+" TERM)*
//! TERM    = "attn:" LAYERS ["=" KIND] | "mlp:" LAYERS ["=" KIND] | "head:" HEADS ["=" KIND]
//! LAYERS  = (N | N "-" N) ("," ...)*            e.g. 2,4 or 20-23
//! HEADS   = (L "." H | L "." H "-" H) ("," ...)* e.g. 5.3,5.7 or 2.0-3
//! KIND    = identity | zero | mean
//! ```
//!
//! The label: terms sorted by site (attn, head, mlp) then layer (then head), one term per run
//! of atoms of the same site and kind, the kind written only when it is not the site's
//! default, and every run of two or more consecutive values written `a-b`.

use anyhow::Result;

use super::{Atom, Kind, Setting, Site, MAX_HEAD, MAX_LAYER};
use crate::bad_input;

/// Parse a setting; the error names the term that is wrong.
pub fn parse_setting(text: &str) -> Result<Setting, String> {
    if text.trim() == "base" {
        return Ok(Setting::base());
    }
    let mut atoms = Vec::new();
    for term in text.split('+') {
        parse_term(term.trim(), &mut atoms).map_err(|why| format!("term {term:?}: {why}"))?;
    }
    Setting::new(atoms)
}

/// `--ablate SPEC`: [`parse_setting`], its error a bad-input line naming the option.
pub fn parse_ablate(text: &str) -> Result<Setting> {
    parse_setting(text).map_err(|why| bad_input!("--ablate {text:?}: {why}"))
}

/// `--bypass SET`, the paper's case of `--ablate attn:SET`.
pub fn parse_bypass(text: &str) -> Result<Setting> {
    let mut atoms = Vec::new();
    layer_list(text, &mut |l| atoms.push(Atom::attn(l, Kind::Identity)))
        .map_err(|why| bad_input!("--bypass {text:?}: {why} (expected e.g. 2,4 or 20-23)"))?;
    Setting::new(atoms).map_err(|why| bad_input!("--bypass {text:?}: {why}"))
}

fn parse_term(term: &str, atoms: &mut Vec<Atom>) -> Result<(), String> {
    if term.is_empty() {
        return Err("empty term".into());
    }
    let (site, rest) = term
        .split_once(':')
        .ok_or("expected SITE:LAYERS, e.g. attn:20-23, mlp:3=mean or head:5.3,5.7")?;
    let site = Site::from_name(site.trim()).ok_or_else(|| {
        format!(
            "unknown site {:?} (expected attn, head or mlp)",
            site.trim()
        )
    })?;
    let (body, kind) = match rest.split_once('=') {
        Some((body, kind)) => {
            let kind = Kind::from_name(kind.trim()).ok_or_else(|| {
                format!(
                    "unknown kind {:?} (expected identity, zero or mean)",
                    kind.trim()
                )
            })?;
            (body, kind)
        }
        None => (rest, site.default_kind()),
    };
    if !site.allows(kind) {
        return Err(format!(
            "{} cannot be {} (only attention has weights to replace)",
            site.name(),
            kind.name()
        ));
    }
    match site {
        Site::Attn => layer_list(body, &mut |l| atoms.push(Atom::attn(l, kind))),
        Site::Mlp => layer_list(body, &mut |l| atoms.push(Atom::mlp(l, kind))),
        Site::Head => head_list(body, &mut |l, h| atoms.push(Atom::head(l, h, kind))),
    }
}

fn number(text: &str, max: usize, what: &str) -> Result<usize, String> {
    let n = text
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("{:?} is not a {what} number", text.trim()))?;
    if n > max {
        return Err(format!(
            "{what} {n} is out of range (no model has that many)"
        ));
    }
    Ok(n)
}

/// `lo-hi` (inclusive, `lo <= hi`) or a single number.
fn range(part: &str, max: usize, what: &str) -> Result<(usize, usize), String> {
    match part.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (number(lo, max, what)?, number(hi, max, what)?);
            if lo > hi {
                return Err(format!("range {} is empty (start > end)", part.trim()));
            }
            Ok((lo, hi))
        }
        None => {
            let n = number(part, max, what)?;
            Ok((n, n))
        }
    }
}

fn layer_list(text: &str, add: &mut dyn FnMut(usize)) -> Result<(), String> {
    for part in text.split(',') {
        let (lo, hi) = range(part, MAX_LAYER, "layer")?;
        (lo..=hi).for_each(&mut *add);
    }
    Ok(())
}

fn head_list(text: &str, add: &mut dyn FnMut(usize, usize)) -> Result<(), String> {
    for part in text.split(',') {
        let (layer, heads) = part
            .split_once('.')
            .ok_or_else(|| format!("{:?} is not LAYER.HEAD, e.g. 5.3 or 2.0-3", part.trim()))?;
        let layer = number(layer, MAX_LAYER, "layer")?;
        let (lo, hi) = range(heads, MAX_HEAD, "head")?;
        (lo..=hi).for_each(|h| add(layer, h));
    }
    Ok(())
}

/// `values` (sorted, distinct) with every run of two or more consecutive values as `a-b`.
fn runs(values: &[usize], prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{prefix}{}-{}", values[i], values[j])
        } else {
            format!("{prefix}{}", values[i])
        });
        i = j + 1;
    }
    out
}

/// The canonical label (see the module doc).
pub fn label(setting: &Setting) -> String {
    let atoms = setting.atoms();
    if atoms.is_empty() {
        return "base".into();
    }
    let mut terms = Vec::new();
    let mut i = 0;
    while i < atoms.len() {
        let (site, kind) = (atoms[i].site, atoms[i].kind);
        let mut j = i;
        while j < atoms.len() && atoms[j].site == site && atoms[j].kind == kind {
            j += 1;
        }
        let term = &atoms[i..j];
        let body = match site {
            Site::Attn | Site::Mlp => {
                runs(&term.iter().map(|a| a.layer).collect::<Vec<_>>(), "").join(",")
            }
            Site::Head => {
                let mut parts = Vec::new();
                let mut k = 0;
                while k < term.len() {
                    let layer = term[k].layer;
                    let heads: Vec<usize> = term[k..]
                        .iter()
                        .take_while(|a| a.layer == layer)
                        .filter_map(|a| a.head)
                        .collect();
                    k += heads.len();
                    parts.extend(runs(&heads, &format!("{layer}.")));
                }
                parts.join(",")
            }
        };
        let kind = if kind == site.default_kind() {
            String::new()
        } else {
            format!("={}", kind.name())
        };
        terms.push(format!("{}:{body}{kind}", site.name()));
        i = j;
    }
    terms.join("+")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label_of(text: &str) -> String {
        parse_setting(text).unwrap().label()
    }

    #[test]
    fn labels_are_canonical() {
        assert_eq!(label_of("base"), "base");
        assert_eq!(label_of("attn:2,1"), "attn:1-2");
        assert_eq!(label_of("attn:20-23"), "attn:20-23");
        assert_eq!(label_of("head:2.3,2.0-2"), "head:2.0-3");
        assert_eq!(label_of("head:2.0,2.2"), "head:2.0,2.2");
        assert_eq!(label_of("mlp:22=mean"), "mlp:22=mean");
        assert_eq!(label_of("mlp:3=zero+attn:3=zero"), "attn:3=zero+mlp:3");
        assert_eq!(label_of("attn: 5, 1 =identity"), "attn:1,5");
        assert_eq!(label_of("head:5.3+head:4.1=mean"), "head:4.1=mean+head:5.3");
    }

    #[test]
    fn bad_terms_are_named() {
        for (text, says) in [
            ("", "empty term"),
            ("attn:1+", "empty term"),
            ("neuron:1", "unknown site"),
            ("attn:1=half", "unknown kind"),
            ("mlp:1=identity", "mlp cannot be identity"),
            ("attn", "expected SITE:LAYERS"),
            ("head:5", "LAYER.HEAD"),
            ("attn:3-1", "empty"),
            ("attn:99999999999", "out of range"),
            ("head:1.99999999", "out of range"),
            ("attn:1+attn:1=zero", "same place"),
        ] {
            let err = parse_setting(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = parse_setting("attn:1+mlp:x").unwrap_err();
        assert!(err.starts_with("term \"mlp:x\""), "{err}");
    }
}
