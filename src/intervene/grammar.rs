//! The one grammar of settings, and the canonical label that parses back to the same setting.
//!
//! ```text
//! SETTING = "base" | TERM ("+" TERM)*
//! TERM    = "attn:" LAYERS ["=" KIND] | "mlp:" LAYERS ["=" KIND] | "head:" HEADS ["=" KIND]
//!         | "neuron:" UNITS ["=" KIND] | "neuron:@" SCORES ":" FRACTION ["=" KIND]
//! LAYERS  = (N | N "-" N) ("," ...)*            e.g. 2,4 or 20-23
//! HEADS   = (L "." H | L "." H "-" H) ("," ...)* e.g. 5.3,5.7 or 2.0-3
//! UNITS   = as HEADS, where a part without "L." continues the layer before it
//!                                               e.g. 3.100-163 or 3.5,9,4.0
//! SCORES  = a path ending in .npy, or the 16-hex-digit sha256 prefix a label names it by
//! FRACTION = a number in (0, 1] or a percentage  e.g. 0.005 or 0.5%
//! KIND    = identity | zero | mean
//! ```
//!
//! The label: terms sorted by site (attn, head, mlp, neuron) then layer (then head or neuron),
//! one term per run of atoms of the same site and kind, the kind written only when it is not
//! the site's default, and every run of two or more consecutive values written `a-b`; neuron
//! sets from score files last, each `neuron:@<sha256 prefix>:FRACTION`.

use anyhow::Result;

use super::scores::{Derived, Fraction, NeuronSet, ScoreSource, SHA_PREFIX};
use super::{Atom, Kind, Setting, Site, MAX_HEAD, MAX_LAYER, MAX_NEURON};
use crate::bad_input;

/// Parse a setting; the error names the term that is wrong.
pub fn parse_setting(text: &str) -> Result<Setting, String> {
    if text.trim() == "base" {
        return Ok(Setting::base());
    }
    let (mut atoms, mut sets) = (Vec::new(), Vec::new());
    for term in text.split('+') {
        parse_term(term.trim(), &mut atoms, &mut sets)
            .map_err(|why| format!("term {term:?}: {why}"))?;
    }
    Setting::with_sets(atoms, sets)
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

fn parse_term(term: &str, atoms: &mut Vec<Atom>, sets: &mut Vec<NeuronSet>) -> Result<(), String> {
    if term.is_empty() {
        return Err("empty term".into());
    }
    let (site, rest) = term
        .split_once(':')
        .ok_or("expected SITE:LAYERS, e.g. attn:20-23, mlp:3=mean or head:5.3,5.7")?;
    let site = Site::from_name(site.trim()).ok_or_else(|| {
        format!(
            "unknown site {:?} (expected attn, head, mlp or neuron)",
            site.trim()
        )
    })?;
    let (body, kind) = match rest.rsplit_once('=') {
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
        Site::Neuron => match body.trim().strip_prefix('@') {
            Some(scores) => {
                sets.push(neuron_set(scores, kind)?);
                Ok(())
            }
            None => neuron_list(body, &mut |l, n| atoms.push(Atom::neuron(l, n, kind))),
        },
    }
}

/// `SCORES:FRACTION` of a `neuron:@` term.
fn neuron_set(text: &str, kind: Kind) -> Result<NeuronSet, String> {
    let (source, fraction) = text
        .rsplit_once(':')
        .ok_or("expected neuron:@FILE.npy:FRACTION, e.g. neuron:@scores.npy:0.5%")?;
    let source = source.trim();
    let is_sha = source.len() == SHA_PREFIX && source.bytes().all(|b| b.is_ascii_hexdigit());
    let source = if source.ends_with(".npy") {
        ScoreSource::File(source.into())
    } else if is_sha {
        ScoreSource::Sha(source.to_ascii_lowercase())
    } else {
        return Err(format!("score file {source:?} does not end in .npy"));
    };
    Ok(NeuronSet {
        source,
        fraction: Fraction::parse(fraction)?,
        kind,
        neurons: Derived::default(),
    })
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

/// Like [`head_list`], except that a part without `L.` continues the layer before it.
fn neuron_list(text: &str, add: &mut dyn FnMut(usize, usize)) -> Result<(), String> {
    let mut layer = None;
    for part in text.split(',') {
        let units = match part.split_once('.') {
            Some((l, units)) => {
                layer = Some(number(l, MAX_LAYER, "layer")?);
                units
            }
            None => part,
        };
        let layer = layer.ok_or_else(|| {
            format!(
                "{:?} is not LAYER.NEURON, e.g. 3.100-163 or 3.5,9",
                part.trim()
            )
        })?;
        let (lo, hi) = range(units, MAX_NEURON, "neuron")?;
        (lo..=hi).for_each(|n| add(layer, n));
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
    if setting.is_base() {
        return "base".into();
    }
    let atoms = setting.named_atoms();
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
            Site::Head => per_layer(term, |a| a.head, true),
            Site::Neuron => per_layer(term, |a| a.neuron, false),
        };
        let kind = if kind == site.default_kind() {
            String::new()
        } else {
            format!("={}", kind.name())
        };
        terms.push(format!("{}:{body}{kind}", site.name()));
        i = j;
    }
    terms.extend(setting.sets().iter().map(NeuronSet::term));
    terms.join("+")
}

/// `L.a-b,L.c` for the heads or neurons (`unit`) of `term`'s atoms, sorted by layer; with
/// `every_part` false a layer is written only before its first run (`3.5,9-12,4.0`).
fn per_layer(term: &[Atom], unit: fn(&Atom) -> Option<usize>, every_part: bool) -> String {
    let mut parts = Vec::new();
    let mut k = 0;
    while k < term.len() {
        let layer = term[k].layer;
        let units: Vec<usize> = term[k..]
            .iter()
            .take_while(|a| a.layer == layer)
            .filter_map(unit)
            .collect();
        k += units.len();
        let mut layer_runs = runs(&units, "");
        for (r, run) in layer_runs.iter_mut().enumerate() {
            if every_part || r == 0 {
                *run = format!("{layer}.{run}");
            }
        }
        parts.extend(layer_runs);
    }
    parts.join(",")
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
        assert_eq!(label_of("neuron:3.100-163"), "neuron:3.100-163");
        assert_eq!(label_of("neuron:3.9,5,4.0,3.6=zero"), "neuron:3.5-6,9,4.0");
        assert_eq!(label_of("neuron:1.2=mean+mlp:0"), "mlp:0+neuron:1.2=mean");
        assert_eq!(
            label_of("neuron:@0123456789ABCDEF:0.5%=mean+attn:1"),
            "attn:1+neuron:@0123456789abcdef:0.005=mean"
        );
        assert_eq!(label_of("neuron:@s.npy: 1 "), "neuron:@s.npy:1");
    }

    #[test]
    fn bad_terms_are_named() {
        for (text, says) in [
            ("", "empty term"),
            ("attn:1+", "empty term"),
            ("neurons:1", "unknown site"),
            ("neuron:1", "LAYER.NEURON"),
            ("neuron:1.2=identity", "neuron cannot be identity"),
            ("neuron:1.99999999", "out of range"),
            ("neuron:@s.npy", "neuron:@FILE.npy:FRACTION"),
            ("neuron:@s.txt:0.1", "does not end in .npy"),
            ("neuron:@s.npy:0", "outside (0, 1]"),
            ("neuron:@s.npy:101%", "outside (0, 1]"),
            ("neuron:@s.npy:lots", "not a number"),
            ("neuron:1.2+neuron:1.2=mean", "same place"),
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
