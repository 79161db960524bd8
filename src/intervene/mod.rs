//! What a sweep does to the model: a *setting* is a set of interventions, each acting at one
//! site of one block (TransformerLens's idea: the model knows no interventions, the blocks
//! expose sites and an intervention acts there).
//!
//! Sites: `attn` (a block's attention sublayer), `head` (one head of one layer), `mlp`,
//! `neuron` (one hidden unit of one layer's MLP: the input of its down/output projection,
//! after the activation — for gated MLPs `act(gate) · up`).
//! Kinds: `identity` (the paper's bypass: attention weights after the softmax = identity;
//! attn and head only, their default), `zero` (the sublayer's output, the head's output
//! before the output projection, or the neuron, is 0; mlp's and neuron's default), `mean`
//! (replaced by its mean over every position of every input row under the unmodified model).
//!
//! A setting is stored as its sorted *atoms* (site, layer, head or neuron, kind), at most one
//! per place, plus the neuron sets chosen from score files ([`scores`]): two spellings of one
//! setting are one value, and its canonical label ([`Setting::label`], [`grammar`]) is a
//! function of that value alone.

pub mod edit;
pub mod grammar;
pub mod identity;
pub mod mean;
pub mod scores;

use std::fmt;

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bad_input;
pub use edit::{LayerEdit, RowEdits};
pub use grammar::{parse_bypass, parse_setting};
pub use mean::Means;
pub use scores::NeuronSet;

/// Layer numbers above this are refused while parsing, before a range like `0-99999999999`
/// is expanded; [`Setting::check`] then checks each layer against the model.
pub const MAX_LAYER: usize = 1 << 16;
/// The same bound for head indices.
pub const MAX_HEAD: usize = 1 << 12;
/// The same bound for neuron indices (an MLP's hidden units).
pub const MAX_NEURON: usize = 1 << 20;

/// Where an intervention acts. The order is the label's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    Attn,
    Head,
    Mlp,
    Neuron,
}

impl Site {
    pub const ALL: [Site; 4] = [Site::Attn, Site::Head, Site::Mlp, Site::Neuron];

    pub fn name(self) -> &'static str {
        match self {
            Site::Attn => "attn",
            Site::Head => "head",
            Site::Mlp => "mlp",
            Site::Neuron => "neuron",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The kind a term of this site has when it names none.
    pub fn default_kind(self) -> Kind {
        match self {
            Site::Attn | Site::Head => Kind::Identity,
            Site::Mlp | Site::Neuron => Kind::Zero,
        }
    }

    /// Whether `kind` can act here (`identity` changes attention weights, which an MLP has not).
    pub fn allows(self, kind: Kind) -> bool {
        matches!(self, Site::Attn | Site::Head) || kind != Kind::Identity
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

/// One intervention at one site of one block (`head` is set exactly for [`Site::Head`],
/// `neuron` exactly for [`Site::Neuron`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom {
    pub site: Site,
    pub layer: usize,
    pub head: Option<usize>,
    pub neuron: Option<usize>,
    pub kind: Kind,
}

impl Atom {
    pub fn attn(layer: usize, kind: Kind) -> Self {
        Self {
            site: Site::Attn,
            layer,
            head: None,
            neuron: None,
            kind,
        }
    }

    pub fn head(layer: usize, head: usize, kind: Kind) -> Self {
        Self {
            site: Site::Head,
            layer,
            head: Some(head),
            neuron: None,
            kind,
        }
    }

    pub fn mlp(layer: usize, kind: Kind) -> Self {
        Self {
            site: Site::Mlp,
            layer,
            head: None,
            neuron: None,
            kind,
        }
    }

    pub fn neuron(layer: usize, neuron: usize, kind: Kind) -> Self {
        Self {
            site: Site::Neuron,
            layer,
            head: None,
            neuron: Some(neuron),
            kind,
        }
    }

    /// Where it acts, without what it does: a setting holds one atom per place.
    fn place(&self) -> (Site, usize, Option<usize>, Option<usize>) {
        (self.site, self.layer, self.head, self.neuron)
    }
}

/// A set of interventions; the empty set is the unmodified (`base`) model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Setting {
    /// The atoms its terms name one by one.
    atoms: Vec<Atom>,
    /// Its neuron sets from score files.
    sets: Vec<NeuronSet>,
    /// Every atom that acts: `atoms` and each resolved set's neurons.
    acting: scores::Derived,
}

/// One entry of a result's `interventions` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterventionInfo {
    pub site: String,
    pub layers: Vec<usize>,
    pub heads: Option<Vec<usize>>,
    /// The neurons of a `neuron` term naming one layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neurons: Option<Vec<usize>>,
    /// A neuron set's scores and fraction, `@<sha256 prefix>:FRACTION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<String>,
    pub kind: String,
}

impl Setting {
    /// The setting of these atoms; two atoms at one place are an error naming both.
    pub fn new(atoms: Vec<Atom>) -> Result<Self, String> {
        Self::with_sets(atoms, Vec::new())
    }

    /// The setting of these atoms and neuron sets. Two atoms at one place are an error naming
    /// both; a set may name a neuron another term names only with the same kind.
    pub fn with_sets(mut atoms: Vec<Atom>, mut sets: Vec<NeuronSet>) -> Result<Self, String> {
        atoms.sort_unstable();
        atoms.dedup();
        sets.sort();
        sets.dedup();
        let mut acting = atoms.clone();
        acting.extend(sets.iter().flat_map(|s| s.neurons.0.iter().copied()));
        acting.sort_unstable();
        acting.dedup();
        if let Some(w) = acting.windows(2).find(|w| w[0].place() == w[1].place()) {
            return Err(format!(
                "{} and {} act at the same place",
                Setting::one(w[0]).label(),
                Setting::one(w[1]).label()
            ));
        }
        Ok(Self {
            atoms,
            sets,
            acting: scores::Derived(acting),
        })
    }

    fn one(atom: Atom) -> Self {
        Self::new(vec![atom]).expect("one atom")
    }

    pub fn base() -> Self {
        Self::default()
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

    /// Every atom that acts, sorted (the neurons of its score-file sets included).
    pub fn atoms(&self) -> &[Atom] {
        &self.acting.0
    }

    /// The atoms its terms name one by one (the label's terms besides the sets).
    pub fn named_atoms(&self) -> &[Atom] {
        &self.atoms
    }

    /// Its neuron sets from score files.
    pub fn sets(&self) -> &[NeuronSet] {
        &self.sets
    }

    /// This setting with every set replaced by `resolve(set)` (its scores read).
    pub fn resolve_sets(
        &self,
        resolve: &mut dyn FnMut(&NeuronSet) -> Result<NeuronSet>,
    ) -> Result<Self> {
        let sets = self.sets.iter().map(resolve).collect::<Result<Vec<_>>>()?;
        Self::with_sets(self.atoms.clone(), sets).map_err(|why| bad_input!("{why}"))
    }

    pub fn is_base(&self) -> bool {
        self.atoms.is_empty() && self.sets.is_empty()
    }

    /// The lowest touched layer: blocks below it compute exactly what the base model does.
    pub fn lowest(&self) -> Option<usize> {
        self.atoms().iter().map(|a| a.layer).min()
    }

    /// Whether some intervention replaces a value by its base-model mean.
    pub fn uses_mean(&self) -> bool {
        self.atoms().iter().any(|a| a.kind == Kind::Mean)
    }

    /// The bypassed layers when this is the paper's kind of setting (only whole-attention
    /// identity bypasses; `Some([])` for base), else `None`.
    pub fn bypass_layers(&self) -> Option<Vec<usize>> {
        if !self.sets.is_empty() {
            return None;
        }
        self.atoms
            .iter()
            .map(|a| (a.site == Site::Attn && a.kind == Kind::Identity).then_some(a.layer))
            .collect()
    }

    /// The canonical label, e.g. `base`, `attn:1-2`, `head:2.0,2.2+mlp:3=mean`.
    pub fn label(&self) -> String {
        grammar::label(self)
    }

    /// The result file's `interventions`: one object per term of the label, except that a
    /// `head` or `neuron` term gives one object per layer it names.
    pub fn interventions(&self) -> Vec<InterventionInfo> {
        let mut out: Vec<InterventionInfo> = Vec::new();
        for atom in &self.atoms {
            let same_term = |info: &InterventionInfo| {
                info.site == atom.site.name() && info.kind == atom.kind.name()
            };
            let one_layer =
                |info: &InterventionInfo| same_term(info) && info.layers == [atom.layer];
            match (out.last_mut(), atom.head, atom.neuron) {
                (Some(info), None, None) if same_term(info) => info.layers.push(atom.layer),
                (Some(info), Some(h), _) if one_layer(info) => {
                    info.heads.get_or_insert_with(Vec::new).push(h)
                }
                (Some(info), _, Some(n)) if one_layer(info) => {
                    info.neurons.get_or_insert_with(Vec::new).push(n)
                }
                _ => out.push(InterventionInfo {
                    site: atom.site.name().into(),
                    layers: vec![atom.layer],
                    heads: atom.head.map(|h| vec![h]),
                    neurons: atom.neuron.map(|n| vec![n]),
                    scores: None,
                    kind: atom.kind.name().into(),
                }),
            }
        }
        for set in &self.sets {
            let mut layers: Vec<usize> = set.neurons.0.iter().map(|a| a.layer).collect();
            layers.dedup();
            out.push(InterventionInfo {
                site: Site::Neuron.name().into(),
                layers,
                heads: None,
                neurons: None,
                scores: Some(set.scores_name()),
                kind: set.kind.name().into(),
            });
        }
        out
    }

    /// Every layer, head and neuron must exist in a model of these sizes, and every score
    /// file must have been read; the error names the offending term.
    pub fn check(&self, model: ModelSites) -> Result<(), String> {
        if let Some(set) = self.sets.iter().find(|s| !s.is_resolved()) {
            return Err(format!(
                "term {}: its scores are not read (give the score file's path)",
                set.term()
            ));
        }
        for atom in self.atoms() {
            let term = Setting::one(*atom).label();
            let out_of = |what: &str, n: usize, count: usize| {
                format!(
                    "term {term}: {what} {n} is out of range (the model has {what}s 0..{})",
                    count.saturating_sub(1)
                )
            };
            if atom.layer >= model.layers {
                return Err(out_of("layer", atom.layer, model.layers));
            }
            if let Some(h) = atom.head.filter(|&h| h >= model.heads) {
                return Err(out_of("head", h, model.heads));
            }
            if let Some(n) = atom.neuron.filter(|&n| n >= model.neurons) {
                return Err(out_of("neuron", n, model.neurons));
            }
        }
        Ok(())
    }

    /// The atoms acting in block `layer`.
    pub fn in_layer(&self, layer: usize) -> impl Iterator<Item = &Atom> {
        self.atoms().iter().filter(move |a| a.layer == layer)
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
        if site == Site::Neuron {
            return Err(bad(
                "one setting per neuron is not a sweep; rank neurons with `llm-mem localize`"
                    .into(),
            ));
        }
        Ok(Some(Self { site, kind }))
    }

    /// This sweep's settings over layers `0..layers` of a model with `heads` heads.
    fn settings(self, layers: usize, heads: usize) -> Vec<Setting> {
        let one = Setting::one;
        match self.site {
            Site::Attn => (0..layers).map(|l| one(Atom::attn(l, self.kind))).collect(),
            Site::Mlp => (0..layers).map(|l| one(Atom::mlp(l, self.kind))).collect(),
            Site::Head => (0..layers)
                .flat_map(|l| (0..heads).map(move |h| one(Atom::head(l, h, self.kind))))
                .collect(),
            Site::Neuron => unreachable!("SweepSpec::parse refuses neuron sweeps"),
        }
    }
}

/// The model sizes a setting is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ModelSites {
    pub layers: usize,
    /// Query heads per block.
    pub heads: usize,
    /// Hidden units per MLP (the intermediate size).
    pub neurons: usize,
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
    // Front ends check each extra setting first, naming the option it came from; this guard
    // is for library callers that pass settings straight in.
    for set in extra {
        set.check(model)
            .map_err(|why| bad_input!("setting {}: {why}", set.label()))?;
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
                neurons: None,
                scores: None,
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
        let neurons = set("neuron:1.5,9,2.0=mean").interventions();
        assert_eq!(neurons.len(), 2);
        assert_eq!(neurons[0].neurons, Some(vec![5, 9]));
        assert_eq!(
            (neurons[1].layers.clone(), neurons[1].kind.as_str()),
            (vec![2], "mean")
        );
        let text = serde_json::to_string(&neurons[0]).unwrap();
        assert!(
            text.contains("\"neurons\":[5,9]") && !text.contains("scores"),
            "{text}"
        );
        let plain = serde_json::to_string(&set("mlp:1").interventions()[0]).unwrap();
        assert!(!plain.contains("neurons"), "{plain}");
        assert!(Setting::base().interventions().is_empty());
    }

    #[test]
    fn sweeps_in_order_without_duplicates() {
        let model = ModelSites {
            layers: 3,
            heads: 2,
            neurons: 8,
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
        assert!(sweep(model, None, &[], &[set("neuron:1.7")]).is_ok());
        let err = sweep(model, None, &[], &[set("neuron:1.8")]).unwrap_err();
        assert!(
            err.to_string().contains("neuron 8 is out of range"),
            "{err}"
        );
        let unread = sweep(model, None, &[], &[set("neuron:@s.npy:0.5")]).unwrap_err();
        assert!(unread.to_string().contains("not read"), "{unread}");
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
