//! Making ONNX Runtime's CUDA provider loadable, and saying exactly why when it is not.
//!
//! The `onnxruntime-gpu` wheel's CUDA provider (`libonnxruntime_providers_cuda.so`) links the CUDA
//! runtime, cuBLAS and cuRAND, loads cuDNN when it runs, and needs the NVIDIA driver's `libcuda.so.1`.
//! `scripts/setup.sh --gpu` installs all but the driver as PyPI wheels under the virtual environment's
//! `site-packages/nvidia/`, where the system's loader never looks. Python's onnxruntime preloads them
//! (`onnxruntime.preload_dlls()`); swipebot does the same before it registers the provider: each
//! library is opened by its full path, in dependency order, so that the provider's own load finds them
//! already loaded by name. No `LD_LIBRARY_PATH` is needed, and a library the wheels do not have is
//! looked for on the system's library path (a CUDA toolkit installed system-wide works too).
//!
//! [`prepare`] checks, in order: that the ONNX Runtime library has a CUDA provider next to it, that
//! every CUDA library resolves, that the driver is there, and that the provider itself loads. The
//! first that fails is named, with what installs it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LOCAL, RTLD_NOW};

/// The NVIDIA driver's library: it comes with the driver, never from a wheel.
pub const DRIVER: &str = "libcuda.so.1";

/// File name of ONNX Runtime's CUDA provider, looked for next to the ONNX Runtime library.
pub const PROVIDER: &str = "libonnxruntime_providers_cuda.so";

/// File name of the part every ONNX Runtime provider library needs, next to it.
pub const PROVIDERS_SHARED: &str = "libonnxruntime_providers_shared.so";

/// One library the CUDA provider needs, where the wheels put it, and which wheel that is.
#[derive(Debug, Clone, Copy)]
pub struct Needed {
    /// The name the provider asks the loader for.
    pub soname: &'static str,
    /// Its folder under `site-packages/nvidia/`.
    pub folder: &'static str,
    /// The PyPI package that ships it (installed by `scripts/setup.sh --gpu`).
    pub package: &'static str,
}

/// What ONNX Runtime 1.31's CUDA provider (built for CUDA 13 and cuDNN 9) needs besides the driver,
/// in the order they are loaded: each after the libraries it links.
pub const NEEDED: [Needed; 5] = [
    Needed {
        soname: "libcudart.so.13",
        folder: "cu13/lib",
        package: "nvidia-cuda-runtime",
    },
    Needed {
        soname: "libcublasLt.so.13",
        folder: "cu13/lib",
        package: "nvidia-cublas",
    },
    Needed {
        soname: "libcublas.so.13",
        folder: "cu13/lib",
        package: "nvidia-cublas",
    },
    Needed {
        soname: "libcurand.so.10",
        folder: "cu13/lib",
        package: "nvidia-curand",
    },
    Needed {
        soname: "libcudnn.so.9",
        folder: "cudnn/lib",
        package: "nvidia-cudnn-cu13",
    },
];

/// Why the CUDA provider cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaProblem {
    /// The ONNX Runtime library has no CUDA provider next to it.
    #[error(
        "the ONNX Runtime at {} has no CUDA provider ({PROVIDER} is not next to it): it is the CPU build, \
         or was linked by an older scripts/setup.sh; run `scripts/setup.sh --gpu`",
        library.display()
    )]
    NoProvider {
        /// The ONNX Runtime library in use.
        library: PathBuf,
    },
    /// A CUDA or cuDNN library was found neither in the wheels nor on the system's library path.
    #[error(
        "CUDA library {soname} not found (looked in {} and the system's library path): it comes with the \
         `{package}` wheel, which `scripts/setup.sh --gpu` installs",
        looked_in.display()
    )]
    MissingLibrary {
        /// The library's name.
        soname: &'static str,
        /// The wheel folder looked in first.
        looked_in: PathBuf,
        /// The PyPI package that ships it.
        package: &'static str,
    },
    /// A library file is there but the loader refused it.
    #[error("could not load the CUDA library {}: {message}", path.display())]
    BadLibrary {
        /// The file.
        path: PathBuf,
        /// What the loader said.
        message: String,
    },
    /// Every CUDA library resolves, but the NVIDIA driver's does not: no driver (or no GPU) here.
    #[error(
        "the NVIDIA driver is missing: {DRIVER} cannot be loaded ({message}); every CUDA library the \
         provider needs was found, so install the NVIDIA driver on this machine, or score on the CPU \
         (runtime.device = \"cpu\")"
    )]
    NoDriver {
        /// What the loader said.
        message: String,
    },
    /// The provider library itself did not load, with the loader's reason (it names the library).
    #[error("ONNX Runtime's CUDA provider {} could not be loaded: {message}", path.display())]
    ProviderLoad {
        /// The provider file.
        path: PathBuf,
        /// What the loader said.
        message: String,
    },
}

/// The libraries opened so far, kept open for the life of the process: the provider needs them
/// loaded when ONNX Runtime opens it, and at every call after.
static KEPT: Mutex<Vec<Library>> = Mutex::new(Vec::new());

/// The outcome of the first [`prepare`]; the libraries are looked for once a process.
static PREPARED: OnceLock<Result<(), CudaProblem>> = OnceLock::new();

/// The `site-packages` folder of the wheel an ONNX Runtime library comes from: its real path is
/// `site-packages/onnxruntime/capi/libonnxruntime.so.*` (the setup script's link points there).
pub fn site_packages(ort_library: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(ort_library).ok()?;
    let capi = real.parent()?;
    let package = capi.parent()?;
    (capi.file_name() == Some(OsStr::new("capi"))).then(|| package.parent().map(Path::to_path_buf))?
}

/// Opens `file` (a path, or a bare name the system's loader looks up) and keeps it open.
fn open_and_keep(file: &OsStr, flags: i32) -> Result<(), String> {
    // SAFETY: these are the NVIDIA and ONNX Runtime libraries named above; their initialisers only
    // register themselves (no code of ours runs against them here).
    let library = unsafe { Library::open(Some(file), flags) }.map_err(|e| {
        // libloading's error says only "dlopen failed"; the loader's own words are its source.
        match std::error::Error::source(&e) {
            Some(reason) => reason.to_string(),
            None => e.to_string(),
        }
    })?;
    KEPT.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(library);
    Ok(())
}

/// Loads every library of `needed` (in practice [`NEEDED`]), from the wheels under `site_packages`
/// when they are there, else from the system's library path; returns the files loaded, in order.
pub fn preload_libraries(site_packages: Option<&Path>, needed: &[Needed]) -> Result<Vec<PathBuf>, CudaProblem> {
    let mut loaded = Vec::new();
    for &needed in needed {
        let folder = site_packages
            .map(|s| s.join("nvidia").join(needed.folder))
            .unwrap_or_else(|| PathBuf::from("site-packages/nvidia").join(needed.folder));
        let in_wheel = folder.join(needed.soname);
        if in_wheel.is_file() {
            open_and_keep(in_wheel.as_os_str(), RTLD_NOW | RTLD_GLOBAL).map_err(|message| CudaProblem::BadLibrary {
                path: in_wheel.clone(),
                message,
            })?;
            loaded.push(in_wheel);
        } else if open_and_keep(OsStr::new(needed.soname), RTLD_NOW | RTLD_GLOBAL).is_ok() {
            loaded.push(PathBuf::from(needed.soname));
        } else {
            return Err(CudaProblem::MissingLibrary {
                soname: needed.soname,
                looked_in: folder,
                package: needed.package,
            });
        }
    }
    Ok(loaded)
}

/// Checks that the NVIDIA driver's library loads.
pub fn check_driver() -> Result<(), CudaProblem> {
    open_and_keep(OsStr::new(DRIVER), RTLD_NOW | RTLD_GLOBAL).map_err(|message| CudaProblem::NoDriver { message })
}

/// Gets the CUDA provider of the ONNX Runtime at `ort_library` ready to register: checks that it is
/// there, preloads what it links, checks the driver and loads the provider once to surface the
/// loader's own reason if it still fails. Done once a process; later calls return the first outcome.
pub fn prepare(ort_library: &Path) -> Result<(), CudaProblem> {
    PREPARED
        .get_or_init(|| {
            let dir = ort_library.parent().unwrap_or(Path::new("."));
            let provider = dir.join(PROVIDER);
            if !provider.is_file() || !dir.join(PROVIDERS_SHARED).is_file() {
                return Err(CudaProblem::NoProvider {
                    library: ort_library.to_path_buf(),
                });
            }
            let loaded = preload_libraries(site_packages(ort_library).as_deref(), &NEEDED)?;
            tracing::debug!(?loaded, "CUDA libraries preloaded");
            check_driver()?;
            // The provider takes its host interface from the shared provider part, which ONNX
            // Runtime loads first and globally; so does this check, with the same file.
            let shared = dir.join(PROVIDERS_SHARED);
            open_and_keep(shared.as_os_str(), RTLD_NOW | RTLD_GLOBAL)
                .map_err(|message| CudaProblem::ProviderLoad { path: shared, message })?;
            open_and_keep(provider.as_os_str(), RTLD_NOW | RTLD_LOCAL).map_err(|message| {
                CudaProblem::ProviderLoad {
                    path: provider.clone(),
                    message,
                }
            })?;
            tracing::debug!(provider = %provider.display(), "CUDA provider loads");
            Ok(())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wheel layout is found from the link the setup script makes, and not from a library
    /// that is not inside a wheel.
    #[test]
    fn site_packages_is_found_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let capi = dir.path().join("site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        let real = capi.join("libonnxruntime.so.1.31.1");
        std::fs::write(&real, b"x").unwrap();
        let link_dir = dir.path().join("lib/swipebot");
        std::fs::create_dir_all(&link_dir).unwrap();
        let link = link_dir.join("libonnxruntime.so");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let expected = std::fs::canonicalize(dir.path().join("site-packages")).unwrap();
        assert_eq!(site_packages(&link), Some(expected));
        let loose = dir.path().join("libonnxruntime.so");
        std::fs::write(&loose, b"x").unwrap();
        assert_eq!(site_packages(&loose), None);
        assert_eq!(site_packages(&dir.path().join("missing.so")), None);
    }

    /// The site-packages of the ONNX Runtime wheel `scripts/setup.sh` installed.
    fn venv_site_packages() -> PathBuf {
        let ort = Path::new(crate::vision::runtime::DEFAULT_LIBRARY);
        site_packages(ort).unwrap_or_else(|| panic!("{} is not a link into a wheel", ort.display()))
    }

    /// A library found neither in the wheels nor on the system is named, with its wheel and the
    /// folder looked in, and nothing after it is loaded.
    #[test]
    fn a_missing_library_is_named_with_the_wheel_that_ships_it() {
        let site = venv_site_packages();
        let absent = Needed {
            soname: "libswipebot-absent.so.13",
            folder: "cu13/lib",
            package: "nvidia-absent",
        };
        let err = preload_libraries(Some(&site), &[NEEDED[0], absent, NEEDED[1]]).unwrap_err();
        assert!(
            matches!(
                err,
                CudaProblem::MissingLibrary {
                    soname: "libswipebot-absent.so.13",
                    package: "nvidia-absent",
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("`nvidia-absent` wheel") && text.contains("scripts/setup.sh --gpu"),
            "{text}"
        );
        assert!(
            text.contains(&site.join("nvidia/cu13/lib").display().to_string()),
            "{text}"
        );
    }

    /// The development environment (`scripts/setup.sh --dev`) has torch, whose CUDA 13 and cuDNN 9
    /// wheels are the ones the GPU build of ONNX Runtime needs: every library loads from them, by
    /// path, without LD_LIBRARY_PATH, on a machine with no GPU.
    #[test]
    fn every_cuda_library_loads_from_the_wheels() {
        let site = venv_site_packages();
        let loaded = preload_libraries(Some(&site), &NEEDED).unwrap();
        assert_eq!(loaded.len(), NEEDED.len());
        for (path, needed) in loaded.iter().zip(NEEDED) {
            assert_eq!(path, &site.join("nvidia").join(needed.folder).join(needed.soname));
        }
    }

    /// The CPU wheel has no CUDA provider: that is said first, with the command that fixes it.
    #[test]
    fn the_cpu_build_has_no_provider() {
        let ort = std::path::Path::new(crate::vision::runtime::DEFAULT_LIBRARY);
        assert!(ort.is_file(), "ONNX Runtime from scripts/setup.sh at {}", ort.display());
        if ort.parent().unwrap().join(PROVIDER).exists() {
            panic!(
                "{} has the GPU build; this test expects the CPU wheel of scripts/setup.sh --dev",
                ort.display()
            );
        }
        let err = prepare(ort).unwrap_err();
        assert!(matches!(err, CudaProblem::NoProvider { .. }), "{err:?}");
        assert!(err.to_string().contains("scripts/setup.sh --gpu"), "{err}");
    }
}
