//! What a sweep does to the model: a *setting* is a set of interventions, each acting at one
//! site of one block (TransformerLens's idea: the model knows no interventions, the blocks
//! expose sites and an intervention acts there).
//!
//! Sites: `attn` (a block's attention sublayer), `head` (one head of one layer), `mlp`.
//! Kinds: `identity` (the paper's bypass: attention weights after the softmax = identity;
//! attn and head only, their default), `zero` (the sublayer's output, or the head's output
//! before the output projection, is 0; mlp's default), `mean` (replaced by its mean over every
//! position of every input row under the unmodified model).
//!
//! A setting is stored as its sorted *atoms* (site, layer, head, kind), at most one per
//! (site, layer, head): two spellings of one setting are one value, and its canonical label
//! ([`Setting::label`], [`grammar`]) is a function of that value alone.

pub mod edit;
pub mod grammar;
pub mod identity;
pub mod mean;

use std::fmt;

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bad_input;
pub use edit::{LayerEdit, RowEdits};
pub use grammar::{parse_bypass, parse_setting};
pub use mean::Means;

/// Layer numbers above this are refused while parsing, before a range like `0-99999999999`
/// is expanded; [`Setting::check`] then checks each layer against the model.
pub const MAX_LAYER: usize = 1 << 16;
/// The same bound for head indices.
pub const MAX_HEAD: usize = 1 << 12;

/// Where an intervention acts. The order is the label's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    Attn,
    Head,
    Mlp,
}

impl Site {
    pub const ALL: [Site; 3] = [Site::Attn, Site::Head, Site::Mlp];

    pub fn name(self) -> &'static str {
        match self {
            Site::Attn => "attn",
            Site::Head => "head",
            Site::Mlp => "mlp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The kind a term of this site has when it names none.
    pub fn default_kind(self) -> Kind {
        match self {
            Site::Attn | Site::Head => Kind::Identity,
            Site::Mlp => Kind::Zero,
        }
    }

    /// Whether `kind` can act here (`identity` changes attention weights, which an MLP has not).
    pub fn allows(self, kind: Kind) -> bool {
        !(self == Site::Mlp && kind == Kind::Identity)
    }
}

/// What an intervention does at its site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Identity,
    Zero,
    Mean,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Identity, Kind::Zero, Kind::Mean];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Identity => "identity",
            Kind::Zero => "zero",
            Kind::Mean => "mean",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One intervention at one site of one block (`head` is set exactly for [`Site::Head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom {
    pub site: Site,
    pub layer: usize,
    pub head: Option<usize>,
    pub kind: Kind,
}

impl Atom {
    pub fn attn(layer: usize, kind: Kind) -> Self {
        Self {
            site: Site::Attn,
            layer,
            head: None,
            kind,
        }
    }

    pub fn head(layer: usize, head: usize, kind: Kind) -> Self {
        Self {
            site: Site::Head,
            layer,
            head: Some(head),
            kind,
        }
    }

    pub fn mlp(layer: usize, kind: Kind) -> Self {
        Self {
            site: Site::Mlp,
            layer,
            head: None,
            kind,
        }
    }

    /// Where it acts, without what it does: a setting holds one atom per place.
    fn place(&self) -> (Site, usize, Option<usize>) {
        (self.site, self.layer, self.head)
    }
}

/// A set of interventions; the empty set is the unmodified (`base`) model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Setting(Vec<Atom>);

/// One entry of a result's `interventions` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterventionInfo {
    pub site: String,
    pub layers: Vec<usize>,
    pub heads: Option<Vec<usize>>,
    pub kind: String,
}

impl Setting {
    /// The setting of these atoms; two atoms at one place are an error naming both.
    pub fn new(mut atoms: Vec<Atom>) -> Result<Self, String> {
        atoms.sort_unstable();
        atoms.dedup();
        if let Some(w) = atoms.windows(2).find(|w| w[0].place() == w[1].place()) {
            return Err(format!(
                "{} and {} act at the same place",
                Setting(vec![w[0]]).label(),
                Setting(vec![w[1]]).label()
            ));
        }
        Ok(Self(atoms))
    }

    pub fn base() -> Self {
        Self(Vec::new())
    }

    /// The paper's bypass of `layers`' attention (identity attention weights).
    pub fn bypass(layers: &[usize]) -> Self {
        Self::new(
            layers
                .iter()
                .map(|&l| Atom::attn(l, Kind::Identity))
                .collect(),
        )
        .expect("one atom per layer")
    }

    pub fn atoms(&self) -> &[Atom] {
        &self.0
    }

    pub fn is_base(&self) -> bool {
        self.0.is_empty()
    }

    /// The lowest touched layer: blocks below it compute exactly what the base model does.
    pub fn lowest(&self) -> Option<usize> {
        self.0.iter().map(|a| a.layer).min()
    }

    /// Whether some intervention replaces a value by its base-model mean.
    pub fn uses_mean(&self) -> bool {
        self.0.iter().any(|a| a.kind == Kind::Mean)
    }

    /// The bypassed layers when this is the paper's kind of setting (only whole-attention
    /// identity bypasses; `Some([])` for base), else `None`.
    pub fn bypass_layers(&self) -> Option<Vec<usize>> {
        self.0
            .iter()
            .map(|a| (a.site == Site::Attn && a.kind == Kind::Identity).then_some(a.layer))
            .collect()
    }

    /// The canonical label, e.g. `base`, `attn:1-2`, `head:2.0,2.2+mlp:3=mean`.
    pub fn label(&self) -> String {
        grammar::label(self)
    }

    /// The result file's `interventions`: one object per term of the label, except that a
    /// `head` term gives one object per layer it names.
    pub fn interventions(&self) -> Vec<InterventionInfo> {
        let mut out: Vec<InterventionInfo> = Vec::new();
        for atom in &self.0 {
            let same_term = |info: &InterventionInfo| {
                info.site == atom.site.name() && info.kind == atom.kind.name()
            };
            match (out.last_mut(), atom.head) {
                (Some(info), None) if same_term(info) => info.layers.push(atom.layer),
                (Some(info), Some(h)) if same_term(info) && info.layers == [atom.layer] => {
                    info.heads.get_or_insert_with(Vec::new).push(h)
                }
                _ => out.push(InterventionInfo {
                    site: atom.site.name().into(),
                    layers: vec![atom.layer],
                    heads: atom.head.map(|h| vec![h]),
                    kind: atom.kind.name().into(),
                }),
            }
        }
        out
    }

    /// Every layer and head must exist in a model of `layers` blocks with `heads` heads each;
    /// the error names the offending term.
    pub fn check(&self, layers: usize, heads: usize) -> Result<(), String> {
        for atom in &self.0 {
            let term = Setting(vec![*atom]).label();
            if atom.layer >= layers {
                return Err(format!(
                    "term {term}: layer {} is out of range (the model has layers 0..{})",
                    atom.layer,
                    layers.saturating_sub(1)
                ));
            }
            if let Some(h) = atom.head.filter(|&h| h >= heads) {
                return Err(format!(
                    "term {term}: head {h} is out of range (the model has heads 0..{})",
                    heads.saturating_sub(1)
                ));
            }
        }
        Ok(())
    }

    /// The atoms acting in block `layer`.
    pub fn in_layer(&self, layer: usize) -> impl Iterator<Item = &Atom> {
        self.0.iter().filter(move |a| a.layer == layer)
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// On disk a setting is its label. Files written before interventions existed hold the
/// sorted list of bypassed layers instead; both read back.
impl Serialize for Setting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.label().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Setting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Label(String),
            Layers(Vec<usize>),
        }
        match Stored::deserialize(d)? {
            Stored::Label(text) => parse_setting(&text).map_err(serde::de::Error::custom),
            Stored::Layers(layers) => Ok(Setting::bypass(&layers)),
        }
    }
}

/// A `--sweep` choice: one setting per layer (or per head of every layer) at `site`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSpec {
    pub site: Site,
    pub kind: Kind,
}

impl SweepSpec {
    /// `attn`, `mlp`, `head`, with an optional `=KIND`; `none` is `Ok(None)`.
    pub fn parse(text: &str) -> Result<Option<Self>> {
        let bad = |why: String| bad_input!("--sweep {text:?}: {why}");
        let (site, kind) = match text.trim().split_once('=') {
            Some((s, k)) => (s.trim(), Some(k.trim())),
            None => (text.trim(), None),
        };
        if site == "none" && kind.is_none() {
            return Ok(None);
        }
        let site = Site::from_name(site).ok_or_else(|| {
            bad(format!(
                "unknown site {site:?} (expected attn, head, mlp or none)"
            ))
        })?;
        let kind = match kind {
            None => site.default_kind(),
            Some(k) => Kind::from_name(k).ok_or_else(|| {
                bad(format!(
                    "unknown kind {k:?} (expected identity, zero or mean)"
                ))
            })?,
        };
        if !site.allows(kind) {
            return Err(bad(format!("{} cannot be {}", site.name(), kind.name())));
        }
        Ok(Some(Self { site, kind }))
    }

    /// This sweep's settings over layers `0..layers` of a model with `heads` heads.
    fn settings(self, layers: usize, heads: usize) -> Vec<Setting> {
        let one = |a: Atom| Setting(vec![a]);
        match self.site {
            Site::Attn => (0..layers).map(|l| one(Atom::attn(l, self.kind))).collect(),
            Site::Mlp => (0..layers).map(|l| one(Atom::mlp(l, self.kind))).collect(),
            Site::Head => (0..layers)
                .flat_map(|l| (0..heads).map(move |h| one(Atom::head(l, h, self.kind))))
                .collect(),
        }
    }
}

/// The model sizes a sweep is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ModelSites {
    pub layers: usize,
    pub heads: usize,
}

/// The settings of a run, in order: base, each `--sweep` over layers `0..num_layers` (default
/// one `attn` identity sweep), then `extra` (duplicates dropped).
pub fn sweep(
    model: ModelSites,
    num_layers: Option<usize>,
    sweeps: &[Option<SweepSpec>],
    extra: &[Setting],
) -> Result<Vec<Setting>> {
    let single = num_layers.unwrap_or(model.layers);
    if single > model.layers {
        return Err(bad_input!(
            "--num-layers {single} exceeds the model's {} layers",
            model.layers
        ));
    }
    let default = [Some(SweepSpec {
        site: Site::Attn,
        kind: Kind::Identity,
    })];
    let sweeps = if sweeps.is_empty() {
        &default[..]
    } else {
        sweeps
    };
    let mut settings = vec![Setting::base()];
    let mut push = |s: Setting| {
        if !settings.contains(&s) {
            settings.push(s);
        }
    };
    for spec in sweeps.iter().flatten() {
        spec.settings(single, model.heads)
            .into_iter()
            .for_each(&mut push);
    }
    for set in extra {
        set.check(model.layers, model.heads)
            .map_err(|why| bad_input!("--ablate {:?}: {why}", set.label()))?;
        push(set.clone());
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> Setting {
        parse_setting(text).unwrap()
    }

    #[test]
    fn bypass_layers_only_for_pure_attention_identity() {
        assert_eq!(Setting::base().bypass_layers(), Some(vec![]));
        assert_eq!(set("attn:3,1").bypass_layers(), Some(vec![1, 3]));
        assert_eq!(set("attn:3=zero").bypass_layers(), None);
        assert_eq!(set("attn:1+head:2.0").bypass_layers(), None);
        assert_eq!(set("attn:1-2").lowest(), Some(1));
    }

    #[test]
    fn interventions_one_object_per_term_and_per_head_layer() {
        let info = set("attn:20-23").interventions();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].layers, vec![20, 21, 22, 23]);
        assert_eq!(info[0].heads, None);
        assert_eq!(info[0].kind, "identity");
        let info =
            |site: &str, layer: usize, heads: Option<Vec<usize>>, kind: &str| InterventionInfo {
                site: site.into(),
                layers: vec![layer],
                heads,
                kind: kind.into(),
            };
        assert_eq!(
            set("head:2.0,2.3,4.1=zero+mlp:1").interventions(),
            vec![
                info("head", 2, Some(vec![0, 3]), "zero"),
                info("head", 4, Some(vec![1]), "zero"),
                info("mlp", 1, None, "zero"),
            ]
        );
        assert!(Setting::base().interventions().is_empty());
    }

    #[test]
    fn sweeps_in_order_without_duplicates() {
        let model = ModelSites {
            layers: 3,
            heads: 2,
        };
        let labels = |s: Vec<Setting>| s.iter().map(Setting::label).collect::<Vec<_>>();
        let got = sweep(model, Some(2), &[], &[set("attn:1"), set("attn:0-2")]).unwrap();
        assert_eq!(labels(got), ["base", "attn:0", "attn:1", "attn:0-2"]);
        let heads = SweepSpec::parse("head").unwrap();
        let mlp = SweepSpec::parse("mlp=mean").unwrap();
        let got = sweep(model, Some(1), &[heads, mlp], &[]).unwrap();
        assert_eq!(labels(got), ["base", "head:0.0", "head:0.1", "mlp:0=mean"]);
        let none = SweepSpec::parse("none").unwrap();
        assert_eq!(labels(sweep(model, None, &[none], &[]).unwrap()), ["base"]);
        assert!(sweep(model, Some(4), &[], &[]).is_err());
        assert!(sweep(model, None, &[], &[set("attn:3")]).is_err());
        assert!(sweep(model, None, &[], &[set("head:1.2")]).is_err());
        for bad in ["mlp=identity", "neuron", "attn=half", "none=zero"] {
            assert!(SweepSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_as_label_and_reads_old_layer_lists() {
        let s = set("head:1.0-2+mlp:0");
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, "\"head:1.0-2+mlp:0\"");
        assert_eq!(serde_json::from_str::<Setting>(&text).unwrap(), s);
        let old: Vec<Setting> = serde_json::from_str("[[], [2, 1]]").unwrap();
        assert_eq!(old, vec![Setting::base(), set("attn:1-2")]);
    }
}
