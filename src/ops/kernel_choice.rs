//! Which matrix-product kernels a run uses: a pure function of the CPU's features, what each
//! loaded BLAS says it runs, and the user's environment, so that every case is testable
//! without the hardware or the libraries.
//!
//! Why this is needed: a BLAS that does not know a new CPU falls back to generic kernels
//! silently. OpenBLAS 0.3.21 (Debian 12) picks its SSE3 "Prescott" kernels on Sapphire
//! Rapids Xeons, 3× slower than candle's own kernels there (bench/RESULTS.md). So the core a
//! library reports is checked against the CPU's instruction set after loading, a generic
//! OpenBLAS core is replaced by the one the CPU supports (OpenBLAS re-reads
//! `OPENBLAS_CORETYPE` when its dispatch is re-initialized), and a library that still runs
//! generic kernels is not used.
//!
//! The order among good kernels is measured (bench/RESULTS.md, "Kernel choice"): on Intel
//! CPUs MKL's sgemm beats OpenBLAS's on llm-mem's product shapes, on AMD CPUs OpenBLAS beats
//! MKL, and either beats candle's own kernels.

use serde::{Deserialize, Serialize};

/// The widest vector instruction set a kernel can use, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// SSE only: what generic x86-64 kernels (and non-x86 CPUs, for this purpose) use.
    Baseline,
    /// AVX2 with FMA (OpenBLAS's Haswell kernels).
    Avx2,
    /// AVX-512 F/BW/DQ/VL/CD (OpenBLAS's SkylakeX kernels).
    Avx512,
}

impl Isa {
    /// The OpenBLAS core type whose sgemm uses this instruction set.
    pub fn openblas_core(self) -> Option<&'static str> {
        match self {
            Isa::Avx512 => Some("SkylakeX"),
            Isa::Avx2 => Some("Haswell"),
            Isa::Baseline => None,
        }
    }
}

/// The CPU vendor, which decides between MKL and OpenBLAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

/// What the CPU offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    pub vendor: Vendor,
    pub isa: Isa,
}

/// Which BLAS a loaded library is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Library {
    /// OpenBLAS, with the core type its dispatch chose (`openblas_get_corename`).
    OpenBlas { core: String },
    /// Intel MKL (its dispatch follows the CPU's instruction set by itself on Intel CPUs).
    Mkl,
    /// Another CBLAS (Accelerate, BLIS, a reference BLAS): nothing to ask it.
    Other,
}

/// What a loaded library reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub library: Library,
    /// The file or soname it was loaded from.
    pub path: String,
}

/// The instruction set of an OpenBLAS core type's sgemm kernel. Core types newer than the
/// ones named here are AVX-512 ones too (Cooperlake and Sapphire Rapids reuse SkylakeX's
/// sgemm); anything unknown counts as generic.
pub fn core_isa(core: &str) -> Isa {
    match core.to_ascii_lowercase().as_str() {
        "skylakex" | "cooperlake" | "sapphirerapids" | "zen4" | "zen5" => Isa::Avx512,
        "haswell" | "zen" | "excavator" => Isa::Avx2,
        _ => Isa::Baseline,
    }
}

/// The `OPENBLAS_CORETYPE` to re-initialize OpenBLAS with, when its `core` uses a narrower
/// instruction set than the CPU has and the user has not chosen a core type
/// (`user_coretype`). `None`: keep the library's own choice.
pub fn core_to_request(cpu: Cpu, core: &str, user_coretype: bool) -> Option<&'static str> {
    if user_coretype || core_isa(core) >= cpu.isa {
        return None;
    }
    cpu.isa.openblas_core()
}

/// How fast a library's sgemm is on `cpu`, higher is faster; candle's own kernels are
/// [`CANDLE`]. A BLAS running generic kernels on a CPU with vector units ranks below
/// candle's, whose `gemm` dispatches on the CPU's features at run time. An OpenBLAS running
/// AVX2 kernels on an AVX-512 CPU does not: it stays far ahead of candle's kernels on Intel
/// and level with its AVX-512 cores on AMD (bench/RESULTS.md), so it ranks just below them.
pub fn rank(cpu: Cpu, library: &Library) -> u8 {
    match library {
        Library::OpenBlas { core } => match core_isa(core) {
            isa if isa >= cpu.isa => 4,
            Isa::Baseline => 0,
            _ => 3,
        },
        Library::Mkl if cpu.vendor == Vendor::Intel => 5,
        Library::Mkl | Library::Other => 2,
    }
}

/// The rank of candle's own kernels in [`rank`]'s order.
pub const CANDLE: u8 = 1;

/// What the user asked for in the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// `LLM_MEM_BLAS=off`: candle's kernels.
    pub off: bool,
    /// `LLM_MEM_BLAS=PATH`: this library, whatever its rank.
    pub path: Option<String>,
    /// `OPENBLAS_CORETYPE` is set: OpenBLAS, with the user's core type.
    pub coretype: bool,
}

/// The kernels chosen: an index into the candidates, or `None` for candle's kernels, and the
/// one line to print when they are not the fastest the machine offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub pick: Option<usize>,
    pub note: Option<String>,
}

/// Choose among the loaded `candidates` (after any core-type repair). The user's request
/// wins; otherwise the highest [`rank`], first found on ties, with candle's kernels
/// when no library ranks above them.
pub fn choose(cpu: Cpu, candidates: &[Report], request: &Request) -> Choice {
    let ranked = |i: usize| rank(cpu, &candidates[i].library);
    let best = (0..candidates.len())
        .filter(|&i| ranked(i) > CANDLE)
        .max_by_key(|&i| (ranked(i), std::cmp::Reverse(i)));
    let pick = if request.off {
        None
    } else if let Some(path) = &request.path {
        candidates.iter().position(|c| &c.path == path)
    } else if request.coretype {
        let openblas = |c: &Report| matches!(c.library, Library::OpenBlas { .. });
        candidates.iter().position(openblas).or(best)
    } else {
        best
    };
    let rank_of = |pick: Option<usize>| pick.map_or(CANDLE, ranked);
    // `LLM_MEM_BLAS=off` is the explicit way to test candle's kernels: it says so itself.
    let note = (!request.off && rank_of(pick) < rank_of(best)).then(|| {
        let name = |pick: Option<usize>| match pick {
            Some(i) => describe(&candidates[i]),
            None => "candle's kernels".to_string(),
        };
        format!(
            "note: matrix products run on {}, slower here than {} (set by {})",
            name(pick),
            name(best),
            if request.path.is_some() {
                "LLM_MEM_BLAS"
            } else {
                "OPENBLAS_CORETYPE"
            }
        )
    });
    Choice { pick, note }
}

/// A library as the note names it: `OpenBLAS (Prescott core, libopenblas.so.0)`.
fn describe(report: &Report) -> String {
    match &report.library {
        Library::OpenBlas { core } => format!("OpenBLAS ({core} core, {})", report.path),
        Library::Mkl => format!("MKL ({})", report.path),
        Library::Other => report.path.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XEON: Cpu = Cpu {
        vendor: Vendor::Intel,
        isa: Isa::Avx512,
    };
    const EPYC: Cpu = Cpu {
        vendor: Vendor::Amd,
        isa: Isa::Avx2,
    };

    fn openblas(core: &str) -> Report {
        Report {
            library: Library::OpenBlas { core: core.into() },
            path: "libopenblas.so.0".into(),
        }
    }

    fn mkl() -> Report {
        Report {
            library: Library::Mkl,
            path: "libmkl_rt.so.2".into(),
        }
    }

    #[test]
    fn a_generic_openblas_core_is_replaced_by_the_cpus() {
        let haswell_cpu = Cpu {
            vendor: Vendor::Amd,
            isa: Isa::Avx2,
        };
        assert_eq!(
            core_to_request(haswell_cpu, "Prescott", false),
            Some("Haswell")
        );
        assert_eq!(core_to_request(XEON, "Prescott", false), Some("SkylakeX"));
        assert_eq!(core_to_request(XEON, "Haswell", false), Some("SkylakeX"));
        // The library's own good choice, or the user's, stays.
        assert_eq!(core_to_request(XEON, "SapphireRapids", false), None);
        assert_eq!(core_to_request(EPYC, "Zen", false), None);
        assert_eq!(core_to_request(XEON, "Prescott", true), None);
        let old_cpu = Cpu {
            vendor: Vendor::Intel,
            isa: Isa::Baseline,
        };
        assert_eq!(core_to_request(old_cpu, "Core2", false), None);
    }

    #[test]
    fn a_prescott_openblas_on_an_avx2_cpu_is_not_used() {
        // The core could not be repaired (say, a build without dynamic dispatch).
        let only_generic = [openblas("Prescott")];
        let choice = choose(EPYC, &only_generic, &Request::default());
        assert_eq!(choice.pick, None, "candle's kernels beat generic ones");
        assert_eq!(choice.note, None, "nothing faster is available");
        let with_mkl = [openblas("Prescott"), mkl()];
        assert_eq!(choose(EPYC, &with_mkl, &Request::default()).pick, Some(1));
        // Repaired, it is the first choice on AMD, and second to MKL on Intel.
        let repaired = [openblas("Haswell"), mkl()];
        assert_eq!(choose(EPYC, &repaired, &Request::default()).pick, Some(0));
        let repaired = [openblas("SkylakeX"), mkl()];
        assert_eq!(choose(XEON, &repaired, &Request::default()).pick, Some(1));
        assert_eq!(
            choose(XEON, &repaired[..1], &Request::default()).pick,
            Some(0)
        );
    }

    #[test]
    fn an_avx2_openblas_core_on_an_avx512_cpu_beats_candle_and_mkl_on_amd() {
        let zen4 = Cpu {
            vendor: Vendor::Amd,
            isa: Isa::Avx512,
        };
        let forced = Request {
            coretype: true,
            ..Request::default()
        };
        // The user's Haswell core on an AVX-512 CPU: nothing faster to name.
        let choice = choose(zen4, &[openblas("Haswell")], &forced);
        assert_eq!(
            choice,
            Choice {
                pick: Some(0),
                note: None
            }
        );
        let choice = choose(zen4, &[openblas("Haswell"), mkl()], &Request::default());
        assert_eq!(choice.pick, Some(0));
        // On Intel, MKL (and a full-width core) still come first.
        let choice = choose(XEON, &[openblas("Haswell"), mkl()], &forced);
        assert!(choice.note.expect("MKL is faster").contains("MKL"));
        assert!(
            rank(
                XEON,
                &Library::OpenBlas {
                    core: "Haswell".into()
                }
            ) > CANDLE
        );
        assert!(
            rank(
                XEON,
                &Library::OpenBlas {
                    core: "Haswell".into()
                }
            ) < rank(
                XEON,
                &Library::OpenBlas {
                    core: "SkylakeX".into()
                }
            )
        );
    }

    #[test]
    fn the_users_choice_wins_and_a_slow_one_is_said() {
        let found = [openblas("Prescott"), mkl()];
        let forced = Request {
            coretype: true,
            ..Request::default()
        };
        let choice = choose(XEON, &found, &forced);
        assert_eq!(choice.pick, Some(0));
        let note = choice.note.expect("Prescott is slower than MKL here");
        assert!(note.contains("Prescott") && note.contains("MKL"), "{note}");
        assert!(note.contains("OPENBLAS_CORETYPE"), "{note}");

        // Nothing but candle's kernels is faster than the user's generic core.
        let choice = choose(XEON, &found[..1], &forced);
        assert_eq!(choice.pick, Some(0));
        assert!(choice
            .note
            .expect("slower than candle's")
            .contains("candle's kernels"));

        let by_path = Request {
            path: Some("libmkl_rt.so.2".into()),
            ..Request::default()
        };
        let choice = choose(XEON, &[openblas("SkylakeX"), mkl()], &by_path);
        assert_eq!(
            choice,
            Choice {
                pick: Some(1),
                note: None
            }
        );
        let choice = choose(EPYC, &[openblas("Zen"), mkl()], &by_path);
        assert_eq!(choice.pick, Some(1));
        assert!(choice
            .note
            .expect("MKL is slower on AMD")
            .contains("LLM_MEM_BLAS"));

        let off = Request {
            off: true,
            ..Request::default()
        };
        assert_eq!(
            choose(XEON, &found, &off),
            Choice {
                pick: None,
                note: None
            }
        );
    }
}
