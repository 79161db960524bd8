//! Which bypass settings a sweep runs: the base model, each single layer, and extra sets.

use anyhow::Result;

use crate::bad_input;
use crate::model::BypassSet;

/// Layer numbers above this are refused while parsing, before a range like `0-99999999999`
/// is expanded; [`sweep`] then checks each layer against the model.
pub const MAX_LAYER: usize = 1 << 16;

/// Parse a `--bypass` value: a comma list of layers and inclusive ranges, e.g. `2,4` or `20-23`.
pub fn parse_bypass(text: &str) -> Result<BypassSet> {
    let mut layers = Vec::new();
    for part in text.split(',').map(str::trim) {
        let number = |s: &str| {
            let n = s.trim().parse::<usize>().map_err(|_| {
                bad_input!(
                    "--bypass {text:?}: {s:?} is not a layer number (expected e.g. 2,4 or 20-23)"
                )
            })?;
            if n > MAX_LAYER {
                return Err(bad_input!(
                    "--bypass {text:?}: layer {n} is out of range (no model has that many layers)"
                ));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(bad_input!(
                        "--bypass {text:?}: range {part} is empty (start > end)"
                    ));
                }
                layers.extend(lo..=hi);
            }
            None => layers.push(number(part)?),
        }
    }
    Ok(BypassSet::new(layers))
}

/// The settings of a sweep, in order: base model, layers `0..single_layers`, then `extra`
/// (duplicates dropped). Every layer must exist in a model of `model_layers` blocks.
pub fn sweep(
    model_layers: usize,
    single_layers: usize,
    extra: &[BypassSet],
) -> Result<Vec<BypassSet>> {
    if single_layers > model_layers {
        return Err(bad_input!(
            "--num-layers {single_layers} exceeds the model's {model_layers} layers"
        ));
    }
    let mut settings = vec![BypassSet::none()];
    settings.extend((0..single_layers).map(|l| BypassSet::new(vec![l])));
    for set in extra {
        if let Some(&bad) = set.layers().iter().find(|&&l| l >= model_layers) {
            return Err(bad_input!(
                "--bypass: layer {bad} is out of range (the model has layers 0..{})",
                model_layers - 1
            ));
        }
        if !settings.contains(set) {
            settings.push(set.clone());
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse_bypass("2,4").unwrap().layers(), &[2, 4]);
        assert_eq!(parse_bypass("20-23").unwrap().layers(), &[20, 21, 22, 23]);
        assert_eq!(parse_bypass("5, 1-2 ,1").unwrap().layers(), &[1, 2, 5]);
        assert!(parse_bypass("3-1").is_err());
        assert!(parse_bypass("a").is_err());
        assert!(parse_bypass("").is_err());
        assert!(parse_bypass("-3").is_err());
    }

    #[test]
    fn sweep_orders_base_singles_then_extras() {
        let extra = [parse_bypass("1").unwrap(), parse_bypass("0-2").unwrap()];
        let layers: Vec<Vec<usize>> = sweep(4, 2, &extra)
            .unwrap()
            .iter()
            .map(|s| s.layers().to_vec())
            .collect();
        assert_eq!(layers, vec![vec![], vec![0], vec![1], vec![0, 1, 2]]);
        assert!(sweep(4, 5, &[]).is_err());
        assert!(sweep(4, 0, &[parse_bypass("4").unwrap()]).is_err());
    }
}
