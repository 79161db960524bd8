//! Rotary position embeddings, as HF transformers computes them: frequencies
//! `base^(-2i / ndims)` in f32, optionally rescaled (`linear`, `llama3`, `yarn`), angles
//! `position · inv_freq` in f32, cos/sin times YaRN's attention factor, applied to the first `ndims` dimensions of each head either
//! in the "rotate half" form (GPT-NeoX, Llama) or to interleaved pairs (GPT-J).
//!
//! Both config styles of the hub are read: transformers 4.x writes `rope_theta` and
//! `rope_scaling` at the top level, 5.x a `rope_parameters` object holding both.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::bad_input;

/// The rotary keys a config may carry (flattened into each family's `Config`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeKeys {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
}

/// `rope_parameters` (5.x) or `rope_scaling` (4.x).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_type: Option<String>,
    /// 4.x's older spelling of `rope_type`.
    #[serde(default, rename = "type")]
    pub legacy_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    /// YaRN's keys.
    #[serde(default)]
    pub attention_factor: Option<f64>,
    #[serde(default)]
    pub beta_fast: Option<f64>,
    #[serde(default)]
    pub beta_slow: Option<f64>,
    #[serde(default)]
    pub mscale: Option<f64>,
    #[serde(default)]
    pub mscale_all_dim: Option<f64>,
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// How the frequencies are rescaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (i.e. frequencies divided by it).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's: long wavelengths divided by `factor`, short ones kept, a smooth blend
    /// between, the bands set by `original_max_position_embeddings`.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: usize,
    },
    /// YaRN: each frequency blended between itself (high frequencies, more than `beta_fast`
    /// rotations over `original_max_positions`) and itself divided by `factor` (fewer than
    /// `beta_slow`), linearly in between; cos and sin are multiplied by `attention_factor`.
    Yarn {
        factor: f64,
        original_max_positions: usize,
        attention_factor: f64,
        beta_fast: f64,
        beta_slow: f64,
        /// Round the blend's band outwards to whole dimensions.
        truncate: bool,
    },
}

/// A resolved rotary configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSpec {
    pub base: f64,
    /// Fraction of each head's dimensions that rotate.
    pub fraction: f64,
    pub scaling: RopeScaling,
}

impl RopeKeys {
    /// Resolve the keys: `rope_parameters` first, then the top-level 4.x keys, then the
    /// family's own older names (`fallback_base`, `fallback_fraction`), then the defaults
    /// (base 10000, every dimension).
    pub fn resolve(
        &self,
        fallback_base: Option<f64>,
        fallback_fraction: Option<f64>,
    ) -> Result<RopeSpec> {
        let nested = self.rope_parameters.as_ref();
        let base = nested
            .and_then(|r| r.rope_theta)
            .or(self.rope_theta)
            .or(fallback_base)
            .unwrap_or(10000.0);
        let fraction = nested
            .and_then(|r| r.partial_rotary_factor)
            .or(self.partial_rotary_factor)
            .or(fallback_fraction)
            .unwrap_or(1.0);
        if !(base.is_finite() && base > 0.0) {
            return Err(bad_input!("rotary base {base} must be a positive number"));
        }
        if !(0.0..=1.0).contains(&fraction) {
            return Err(bad_input!("rotary fraction {fraction} is outside 0..1"));
        }
        // 5.x keeps the scaling in `rope_parameters`; 4.x in `rope_scaling`.
        let (field, scaling) = match (nested, &self.rope_scaling) {
            (Some(p), _) if p.kind().is_some() => ("rope_parameters", Some(p)),
            (_, Some(s)) => ("rope_scaling", Some(s)),
            _ => ("rope_parameters", None),
        };
        let scaling = match scaling {
            Some(params) => params.scaling(field)?,
            None => RopeScaling::None,
        };
        Ok(RopeSpec {
            base,
            fraction,
            scaling,
        })
    }
}

impl RopeParameters {
    fn kind(&self) -> Option<&str> {
        self.rope_type.as_deref().or(self.legacy_type.as_deref())
    }

    fn scaling(&self, field: &str) -> Result<RopeScaling> {
        let number = |name: &str, value: Option<f64>| {
            value
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| bad_input!("{field}.{name} must be a positive number"))
        };
        let original_max_positions = || {
            self.original_max_position_embeddings
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    bad_input!(
                        "{field}.original_max_position_embeddings must be a positive integer"
                    )
                })
        };
        match self.kind() {
            None | Some("default") => Ok(RopeScaling::None),
            Some("linear") => Ok(RopeScaling::Linear {
                factor: number("factor", self.factor)?,
            }),
            Some("llama3") => {
                let low = number("low_freq_factor", self.low_freq_factor)?;
                let high = number("high_freq_factor", self.high_freq_factor)?;
                if high <= low {
                    return Err(bad_input!(
                        "{field}: high_freq_factor {high} must exceed low_freq_factor {low}"
                    ));
                }
                Ok(RopeScaling::Llama3 {
                    factor: number("factor", self.factor)?,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_positions: original_max_positions()?,
                })
            }
            Some("yarn") => {
                let factor = number("factor", self.factor)?;
                // HF: attention_factor, else from mscale / mscale_all_dim, else 0.1 ln(factor) + 1
                let mscale = |m: f64| match factor <= 1.0 {
                    true => 1.0,
                    false => 0.1 * m * factor.ln() + 1.0,
                };
                let nonzero = |v: Option<f64>| v.filter(|&v| v != 0.0);
                let attention_factor = match (
                    self.attention_factor,
                    nonzero(self.mscale),
                    nonzero(self.mscale_all_dim),
                ) {
                    (Some(given), _, _) => number("attention_factor", Some(given))?,
                    (None, Some(m), Some(all)) => mscale(m) / mscale(all),
                    (None, _, _) => mscale(1.0),
                };
                let finite = |name: &str, value: Option<f64>, default: f64| {
                    let value = nonzero(value).unwrap_or(default);
                    match value.is_finite() {
                        true => Ok(value),
                        false => Err(bad_input!("{field}.{name} must be a number")),
                    }
                };
                Ok(RopeScaling::Yarn {
                    factor,
                    original_max_positions: original_max_positions()?,
                    attention_factor,
                    beta_fast: finite("beta_fast", self.beta_fast, 32.0)?,
                    beta_slow: finite("beta_slow", self.beta_slow, 1.0)?,
                    truncate: self.truncate.unwrap_or(true),
                })
            }
            Some(other) => Err(bad_input!(
                "{field} type {other:?} is not supported (supported: default, linear, llama3, yarn)"
            )),
        }
    }
}

impl RopeSpec {
    /// Rotated dimensions per head, as HF computes them: `int(head_dim * fraction)`.
    pub fn ndims(&self, head_dim: usize) -> usize {
        (head_dim as f64 * self.fraction) as usize
    }

    /// The factor cos and sin are multiplied by (HF's `attention_scaling`; 1 but for YaRN).
    pub fn attention_factor(&self) -> f64 {
        match self.scaling {
            RopeScaling::Yarn {
                attention_factor, ..
            } => attention_factor,
            _ => 1.0,
        }
    }

    /// The `ndims / 2` frequencies, in f32 as HF computes them.
    fn inv_freq(&self, ndims: usize) -> Vec<f32> {
        let base = self.base as f32;
        let default = (0..ndims / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / ndims as f32));
        match self.scaling {
            RopeScaling::None => default.collect(),
            RopeScaling::Linear { factor } => default.map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => {
                let (factor, low, high) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                );
                let old_len = original_max_positions as f32;
                let (low_wavelen, high_wavelen) = (old_len / low, old_len / high);
                default
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_len / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            RopeScaling::Yarn {
                factor,
                original_max_positions,
                beta_fast,
                beta_slow,
                truncate,
                ..
            } => {
                // HF's `_compute_yarn_parameters`: the band in f64, the blend in f32.
                let dims = ndims as f64;
                let correction_dim = |rotations: f64| {
                    let wavelengths = original_max_positions as f64 / (rotations * 2.0 * PI64);
                    dims * wavelengths.ln() / (2.0 * self.base.ln())
                };
                let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(dims - 1.0));
                if low == high {
                    high += 0.001;
                }
                let (low, span, factor) = (low as f32, (high - low) as f32, factor as f32);
                (0..ndims / 2)
                    .map(|i| {
                        let pos_freq = base.powf((2 * i) as f32 / ndims as f32);
                        let (extrapolated, interpolated) =
                            (1.0 / pos_freq, 1.0 / (factor * pos_freq));
                        let ramp = ((i as f32 - low) / span).clamp(0.0, 1.0);
                        let keep = 1.0 - ramp;
                        interpolated * (1.0 - keep) + extrapolated * keep
                    })
                    .collect()
            }
        }
    }
}

const PI64: f64 = std::f64::consts::PI;

/// How rotated dimensions pair up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotaryStyle {
    /// Dimension i pairs with i + ndims/2 (`rotate_half`: GPT-NeoX, Llama, ...).
    Half,
    /// Dimension 2i pairs with 2i + 1 (GPT-J).
    Interleaved,
}

/// Cos/sin tables for every position, `[max_positions, ndims / 2]`.
pub struct Rotary {
    pub cos: Tensor,
    pub sin: Tensor,
    pub ndims: usize,
    style: RotaryStyle,
}

impl Rotary {
    pub fn new(
        spec: &RopeSpec,
        head_dim: usize,
        style: RotaryStyle,
        max_positions: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let ndims = spec.ndims(head_dim);
        let half = ndims / 2;
        let inv_freq = Tensor::from_vec(spec.inv_freq(ndims), (1, half), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .unsqueeze(1)?;
        // Angles in f32, as HF computes them, so they agree to the last bit where possible.
        let angles = positions.broadcast_mul(&inv_freq)?;
        let factor = spec.attention_factor();
        let scaled = |t: Tensor| if factor == 1.0 { Ok(t) } else { t * factor };
        Ok(Self {
            cos: scaled(angles.cos()?)?.to_dtype(dtype)?,
            sin: scaled(angles.sin()?)?.to_dtype(dtype)?,
            ndims,
            style,
        })
    }

    /// Rotate the first `ndims` dimensions of `x` `[b, h, t, d]` by the angles of
    /// `positions` `[b, t]` (u32).
    pub fn apply(&self, x: &Tensor, positions: &Tensor) -> candle_core::Result<Tensor> {
        if self.ndims == 0 {
            return Ok(x.clone());
        }
        let (b, _, t, d) = x.dims4()?;
        let index = positions.flatten_all()?;
        let table = |t_: &Tensor| {
            t_.index_select(&index, 0)?
                .reshape((b, t, self.ndims / 2))?
                .to_dtype(x.dtype())
        };
        let (cos, sin) = (table(&self.cos)?, table(&self.sin)?);
        let part = x.narrow(3, 0, self.ndims)?.contiguous()?;
        let rotated = match self.style {
            RotaryStyle::Half => candle_nn::rotary_emb::rope(&part, &cos, &sin)?,
            RotaryStyle::Interleaved => candle_nn::rotary_emb::rope_i(&part, &cos, &sin)?,
        };
        if self.ndims == d {
            return Ok(rotated);
        }
        Tensor::cat(&[&rotated, &x.narrow(3, self.ndims, d - self.ndims)?], 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(json: serde_json::Value) -> RopeKeys {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn both_config_styles_resolve_alike() {
        let v4 = keys(serde_json::json!({
            "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        }));
        let v5 = keys(serde_json::json!({
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192}
        }));
        assert_eq!(
            v4.resolve(None, None).unwrap(),
            v5.resolve(None, None).unwrap()
        );
        let legacy = keys(serde_json::json!({"rope_scaling": {"type": "linear", "factor": 2.0}}));
        assert_eq!(
            legacy.resolve(None, None).unwrap().scaling,
            RopeScaling::Linear { factor: 2.0 }
        );
    }

    #[test]
    fn unsupported_scaling_names_field_and_value() {
        let dynamic =
            keys(serde_json::json!({"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}}));
        let err = dynamic.resolve(None, None).unwrap_err().to_string();
        assert!(
            err.contains("rope_scaling type \"dynamic\" is not supported"),
            "{err}"
        );
        let missing = keys(serde_json::json!({
            "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0}
        }));
        let err = missing.resolve(None, None).unwrap_err().to_string();
        assert!(err.contains("original_max_position_embeddings"), "{err}");
    }

    /// YaRN as transformers 5.24 computes it (head_dim 64, base 10000, factor 8, original 16):
    /// frequencies and attention factor printed by HF's `_compute_yarn_parameters`.
    #[test]
    fn yarn_matches_hf() {
        let yarn = |extra: serde_json::Value| {
            let mut params = serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0,
                "factor": 8.0, "original_max_position_embeddings": 16});
            params
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            keys(serde_json::json!({ "rope_parameters": params }))
                .resolve(None, None)
                .unwrap()
        };
        let picks = |spec: &RopeSpec| {
            let inv = spec.inv_freq(64);
            [0, 1, 2, 3, 4, 5, 31].map(|i| inv[i])
        };
        // HF's float32 values, printed to 9 digits
        let close = |ours: [f32; 7], hf: [f64; 7]| {
            for (o, h) in ours.iter().zip(hf) {
                assert!((f64::from(*o) / h - 1.0).abs() < 1e-6, "{ours:?} vs {hf:?}");
            }
        };
        let truncated = [
            1.0,
            0.585854888,
            0.316316992,
            0.144958168,
            0.0395284705,
            0.0296421703,
            1.66690188e-05,
        ];
        let spec = yarn(serde_json::json!({}));
        close(picks(&spec), truncated);
        assert!((spec.attention_factor() - 1.2079441541679836).abs() < 1e-12);
        let untruncated = [
            1.0,
            0.547845483,
            0.259310991,
            0.0808354765,
            0.0395284705,
            0.0296421703,
            1.66690188e-05,
        ];
        close(
            picks(&yarn(serde_json::json!({"truncate": false}))),
            untruncated,
        );
        let given = yarn(serde_json::json!({"attention_factor": 1.5}));
        assert_eq!(given.attention_factor(), 1.5);
        let ratio = yarn(serde_json::json!({"mscale": 1.0, "mscale_all_dim": 0.5}));
        assert!((ratio.attention_factor() - 1.094179988101349).abs() < 1e-12);
    }

    /// Llama 3's bands: high frequencies (short wavelengths) unchanged, low ones divided by
    /// the factor, those between blended.
    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let spec = RopeSpec {
            base: 500000.0,
            fraction: 1.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions: 64,
            },
        };
        let plain = RopeSpec {
            scaling: RopeScaling::None,
            ..spec
        };
        let (scaled, unscaled) = (spec.inv_freq(64), plain.inv_freq(64));
        assert_eq!(scaled[0], unscaled[0]);
        assert_eq!(scaled[31], unscaled[31] / 8.0);
        assert!(scaled
            .iter()
            .zip(&unscaled)
            .any(|(s, u)| *s < *u && *s > *u / 8.0));
    }
}
