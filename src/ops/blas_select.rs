//! Finding the BLAS libraries on this machine, asking each which kernels it runs, repairing
//! a misdetected OpenBLAS core, and keeping the one [`kernel_choice::choose`] picks.
//!
//! Environment: `LLM_MEM_BLAS=off` (candle's kernels), `LLM_MEM_BLAS=PATH` (that library),
//! `OPENBLAS_CORETYPE` (OpenBLAS with that core), `LLM_MEM_AVX512=off` (treat the CPU as
//! AVX2-only: llm-mem's own kernels and the OpenBLAS core it asks for).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::blas::Blas;
use super::kernel_choice::{self, Cpu, Isa, Library, Report, Request, Vendor};

/// The kernels a run's matrix products and fused operations use, as the result file and
/// `--help` name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// The library, its version and core: `OpenBLAS 0.3.21, SkylakeX core
    /// (libopenblas.so.0)`, `MKL 2026.2, AVX512_E1 branch (...)`, `candle (gemm 0.19)`.
    pub matmul: String,
    /// The instruction set of llm-mem's own fused kernels (`avx512`, `avx2`, `baseline`),
    /// or `portable` when candle's tensor ops run instead.
    pub fused: String,
}

/// The CPU's vendor and widest usable instruction set (capped at AVX2 by `LLM_MEM_AVX512=off`).
pub fn cpu() -> Cpu {
    let isa = match detected_isa() {
        Isa::Avx512 if avx512_off() => Isa::Avx2,
        isa => isa,
    };
    Cpu {
        vendor: vendor(),
        isa,
    }
}

/// The widest instruction set the CPU has, whatever `LLM_MEM_AVX512` says.
fn detected_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f")
            && has!("avx512bw")
            && has!("avx512dq")
            && has!("avx512vl")
            && has!("avx512cd");
        if avx512 {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

fn vendor() -> Vendor {
    #[cfg(target_arch = "x86_64")]
    {
        let id = std::arch::x86_64::__cpuid(0);
        match [id.ebx, id.edx, id.ecx] {
            [0x756e_6547, 0x4965_6e69, 0x6c65_746e] => Vendor::Intel, // "GenuineIntel"
            [0x6874_7541, 0x6974_6e65, 0x444d_4163] => Vendor::Amd,   // "AuthenticAMD"
            _ => Vendor::Other,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Vendor::Other
}

/// `LLM_MEM_AVX512=off`: run as on an AVX2-only CPU.
pub fn avx512_off() -> bool {
    super::switched_off("LLM_MEM_AVX512")
}

/// A library found and loaded, with what it reports.
struct Found {
    blas: Blas,
    report: Report,
    version: Option<String>,
    /// MKL's code branch (`MKL_CBWR_Get_Auto_Branch`), named.
    branch: Option<&'static str>,
}

/// Load the libraries, choose one, print the choice's note if any. `None`: candle's kernels.
pub fn load() -> (Option<Blas>, String) {
    let request = Request {
        off: matches!(
            std::env::var("LLM_MEM_BLAS").as_deref(),
            Ok("off") | Ok("0")
        ),
        path: std::env::var("LLM_MEM_BLAS").ok().filter(|p| !p.is_empty()),
        coretype: std::env::var_os("OPENBLAS_CORETYPE").is_some_and(|v| !v.is_empty()),
    };
    if request.off {
        return (None, candle_name());
    }
    let cpu = cpu();
    let mut groups = candidate_groups();
    if let Some(path) = &request.path {
        groups.insert(0, vec![path.clone()]);
    }
    let mut found: Vec<Found> = groups
        .iter()
        .filter_map(|group| group.iter().find_map(|p| open(p, cpu, &request)))
        .collect();
    let reports: Vec<Report> = found.iter().map(|f| f.report.clone()).collect();
    let choice = kernel_choice::choose(cpu, &reports, &request);
    if let Some(note) = &choice.note {
        eprintln!("{note}");
    }
    match choice.pick {
        Some(i) => {
            let chosen = found.swap_remove(i);
            let name = describe(&chosen);
            (Some(chosen.blas), name)
        }
        None => (None, candle_name()),
    }
}

/// Where to look, one group per library and the first name of a group that loads: the
/// system's OpenBLAS; MKL from the active Python environment (the PyPI `mkl` package puts
/// `libmkl_rt` in its `lib/`) or the system's; Accelerate.
fn candidate_groups() -> Vec<Vec<String>> {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut mkl = Vec::new();
    for prefix in ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(std::env::var_os)
    {
        for version in ["3", "2"] {
            let lib = PathBuf::from(&prefix).join(format!("lib/libmkl_rt.so.{version}"));
            mkl.push(lib.display().to_string());
        }
    }
    mkl.extend(names(&["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"]));
    vec![
        names(&["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"]),
        mkl,
        names(&["/System/Library/Frameworks/Accelerate.framework/Accelerate"]),
    ]
}

/// Open the library at `path`, make it single-threaded, ask what it runs, and repair an
/// OpenBLAS core narrower than the CPU's unless the user chose one.
fn open(path: &str, cpu: Cpu, request: &Request) -> Option<Found> {
    let blas = Blas::open(path)?;
    let mut found = Found {
        report: Report {
            library: Library::Other,
            path: path.to_string(),
        },
        version: None,
        branch: None,
        blas,
    };
    if let Some(core) = openblas_corename(&found.blas) {
        found.version = call_str(&found.blas, c"openblas_get_config")
            .and_then(|config| config.split_whitespace().nth(1).map(String::from));
        let core = match kernel_choice::core_to_request(cpu, &core, request.coretype) {
            Some(wanted) => repair_core(&found.blas, wanted).unwrap_or(core),
            None => core,
        };
        found.report.library = Library::OpenBlas { core };
    } else if let Some(version) = mkl_version(&found.blas) {
        found.version = Some(version);
        found.branch = mkl_branch(&found.blas);
        found.report.library = Library::Mkl;
    }
    Some(found)
}

/// Re-initialize a dynamic-architecture OpenBLAS with core type `wanted` and return the core
/// it then reports. OpenBLAS reads `OPENBLAS_CORETYPE` only when its dispatch initializes,
/// which happens when the library loads, and a loaded library cannot be loaded again; its
/// exported `gotoblas_dynamic_quit`/`gotoblas_dynamic_init` redo exactly that step. The
/// variable is set only around the call, so the process's environment stays the user's.
fn repair_core(blas: &Blas, wanted: &str) -> Option<String> {
    let quit = blas.symbol(c"gotoblas_dynamic_quit")?;
    let init = blas.symbol(c"gotoblas_dynamic_init")?;
    // SAFETY: both take and return nothing. No product runs yet (the library is being
    // loaded, under the OnceLock that guards every use), so nothing reads the kernel table
    // while it is replaced. `set_var` races only with C code reading the environment at the
    // same moment; llm-mem's other threads are rayon workers that read it through Rust's
    // lock, if at all.
    unsafe {
        std::env::set_var("OPENBLAS_CORETYPE", wanted);
        std::mem::transmute::<*mut c_void, unsafe extern "C" fn()>(quit)();
        std::mem::transmute::<*mut c_void, unsafe extern "C" fn()>(init)();
        std::env::remove_var("OPENBLAS_CORETYPE");
    }
    openblas_corename(blas)
}

fn openblas_corename(blas: &Blas) -> Option<String> {
    call_str(blas, c"openblas_get_corename")
}

/// Call a `const char *f(void)` the library exports.
fn call_str(blas: &Blas, name: &CStr) -> Option<String> {
    let f = blas.symbol(name)?;
    // SAFETY: OpenBLAS's `openblas_get_*` return a static NUL-terminated string.
    unsafe {
        let f = std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *const c_char>(f);
        let s = f();
        (!s.is_null()).then(|| CStr::from_ptr(s).to_string_lossy().trim().to_string())
    }
}

/// MKL's version, `2026.2` from "Intel(R) oneAPI Math Kernel Library Version 2026.2-Product
/// Build …".
fn mkl_version(blas: &Blas) -> Option<String> {
    let f = blas.symbol(c"MKL_Get_Version_String")?;
    let mut buf = [0u8; 256];
    // SAFETY: `MKL_Get_Version_String(char *buf, int len)` writes at most len bytes.
    let text = unsafe {
        let f = std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_char, c_int)>(f);
        f(buf.as_mut_ptr().cast(), buf.len() as c_int - 1);
        CStr::from_ptr(buf.as_ptr().cast())
            .to_string_lossy()
            .into_owned()
    };
    let version = text.split("Version ").nth(1).unwrap_or(&text);
    Some(
        version
            .split(['-', ' '])
            .next()
            .unwrap_or(version)
            .to_string(),
    )
}

/// The code branch MKL's dispatch takes on this CPU (`MKL_CBWR_Get_Auto_Branch`'s values).
fn mkl_branch(blas: &Blas) -> Option<&'static str> {
    let f = blas.symbol(c"MKL_CBWR_Get_Auto_Branch")?;
    // SAFETY: `int MKL_CBWR_Get_Auto_Branch(void)`.
    let branch =
        unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(f)() };
    Some(match branch {
        2 => "COMPATIBLE",
        3 => "SSE2",
        6 => "SSSE3",
        7 => "SSE4_1",
        8 => "SSE4_2",
        9 => "AVX",
        10 => "AVX2",
        12 => "AVX512",
        14 => "AVX512_E1",
        _ => return None,
    })
}

fn describe(found: &Found) -> String {
    let version = found
        .version
        .as_deref()
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    let path = &found.report.path;
    match &found.report.library {
        Library::OpenBlas { core } => format!("OpenBLAS{version}, {core} core ({path})"),
        Library::Mkl => match found.branch {
            Some(branch) => format!("MKL{version}, {branch} branch ({path})"),
            None => format!("MKL{version} ({path})"),
        },
        Library::Other => path.clone(),
    }
}

/// candle's own matrix kernels (the `gemm` crate), named with the instruction set its
/// run-time dispatch takes: the CPU's, since its AVX-512 kernels are compiled in (the
/// `x86-v4` feature) and chosen by the CPU, not by `LLM_MEM_AVX512`.
pub fn candle_name() -> String {
    let isa = match detected_isa() {
        Isa::Avx512 => "avx512",
        Isa::Avx2 => "avx2",
        Isa::Baseline => "baseline",
    };
    format!("candle (gemm 0.19, {isa})")
}
