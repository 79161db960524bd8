//! Axes for the figures: mapping data to pixels (linear or log10), round ranges, "nice"
//! ticks at 1, 2 or 5 times a power of ten, and short tick labels.

/// Map from data to pixels along one axis: linear or log10.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    /// Pixel positions of `lo` and `hi` (for a y axis `px.0` is the bottom).
    pub px: (f64, f64),
}

impl Axis {
    /// A range that covers `values` with round ends: from zero when `from_zero` (and the
    /// data are non-negative), whole decades when `log`.
    pub fn fit(values: &[f64], from_zero: bool, log: bool, px: (f64, f64)) -> Self {
        let finite: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .collect();
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if finite.is_empty() {
            if log {
                (1.0, 10.0)
            } else {
                (0.0, 1.0)
            }
        } else if log {
            let (lo, hi) = (min.log10().floor(), max.log10().ceil());
            (
                10f64.powf(lo),
                10f64.powf(if hi > lo { hi } else { lo + 1.0 }),
            )
        } else {
            let lo = if from_zero && min >= 0.0 { 0.0 } else { min };
            let span = if max > lo {
                max - lo
            } else {
                max.abs().max(1.0)
            };
            let step = nice_step(span, 5);
            let lo = if lo == 0.0 {
                0.0
            } else {
                (lo / step).floor() * step
            };
            let hi = (max / step).ceil() * step;
            (lo, if hi > lo { hi } else { lo + step })
        };
        Self { lo, hi, log, px }
    }

    pub fn fixed(lo: f64, hi: f64, px: (f64, f64)) -> Self {
        Self {
            lo,
            hi,
            log: false,
            px,
        }
    }

    pub fn map(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.px.0 + t * (self.px.1 - self.px.0)
    }

    pub fn contains(&self, v: f64) -> bool {
        v.is_finite() && (!self.log || v > 0.0) && v >= self.lo - 1e-9 && v <= self.hi + 1e-9
    }

    /// Tick positions: about five round values, or decades (with 2 and 5 when few) on a log axis.
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            let every = ((b - a) as f64 / 6.0).ceil().max(1.0) as i32;
            let mults: &[f64] = if b - a <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            let mut ticks = Vec::new();
            for e in (a..=b).filter(|e| (e - a) % every == 0) {
                for m in mults {
                    let v = m * 10f64.powi(e);
                    if v <= self.hi * (1.0 + 1e-9) {
                        ticks.push(v);
                    }
                }
            }
            return ticks;
        }
        let step = nice_step(self.hi - self.lo, 5);
        let first = (self.lo / step).ceil() as i64;
        let last = (self.hi / step + 1e-9).floor() as i64;
        // Rounded so that 3 × 0.2 is the tick 0.6, not 0.6000000000000001.
        (first..=last)
            .map(|k| (k as f64 * step * 1e12).round() / 1e12)
            .collect()
    }

    /// A tick's label, with as many decimals as the tick spacing needs.
    pub fn label(&self, v: f64) -> String {
        if self.log || v.abs() >= 1e5 {
            return format_sig(v);
        }
        let step = nice_step(self.hi - self.lo, 5);
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// 1, 2 or 5 times a power of ten, so that `span` holds about `target` steps.
pub fn nice_step(span: f64, target: usize) -> f64 {
    let raw = (span / target as f64).abs().max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mult = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    mult * mag
}

/// Short label for any magnitude: `0.5`, `12`, `3400`, `2e5`.
pub fn format_sig(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        let s = format!("{v:.0e}");
        return s;
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The frame of a per-block plot at `(left, top, w, h)`: its two axis lines and one tick label
/// per block below; returns the x position of block `l`.
pub fn block_axes(
    doc: &mut super::svg::Svg,
    (left, top, w, h): (f64, f64, f64, f64),
    blocks: usize,
) -> impl Fn(usize) -> f64 {
    let x = move |l: usize| left + w * l as f64 / (blocks.max(2) - 1) as f64;
    doc.line((left, top + h), (left + w, top + h), "#222", "");
    doc.line((left, top), (left, top + h), "#222", "");
    for l in 0..blocks {
        doc.text(
            (x(l), top + h + 16.0),
            &l.to_string(),
            11.0,
            super::svg::Anchor::Middle,
            "",
        );
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_1_2_5() {
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(23.0, 5), 5.0);
        assert_eq!(nice_step(0.07, 5), 0.01);
    }

    #[test]
    fn fit_rounds_outwards_from_zero() {
        let axis = Axis::fit(&[0.31, 0.74], true, false, (0.0, 100.0));
        assert_eq!((axis.lo, axis.hi), (0.0, 0.8));
        assert_eq!(axis.ticks(), vec![0.0, 0.2, 0.4, 0.6, 0.8]);
        assert_eq!(axis.label(0.6), "0.6");
        assert_eq!(axis.map(0.4), 50.0);
    }

    #[test]
    fn log_axis_covers_decades() {
        let axis = Axis::fit(&[3.2, 4100.0, -1.0], false, true, (0.0, 1.0));
        assert_eq!((axis.lo, axis.hi), (1.0, 10000.0));
        assert_eq!(axis.ticks(), vec![1.0, 10.0, 100.0, 1000.0, 10000.0]);
        assert!((axis.map(100.0) - 0.5).abs() < 1e-12);
        assert!(!axis.contains(-1.0));
    }
}
