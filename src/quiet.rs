//! Silence a library's prints to stderr for the duration of one call.

/// Run `f` with file descriptor 2 pointed at /dev/null (Unix); elsewhere just run it.
pub fn without_stderr<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
            return f();
        };
        // SAFETY: plain POSIX fd juggling; the saved descriptor is restored before returning.
        unsafe {
            let saved = libc::dup(2);
            if saved < 0 {
                return f();
            }
            libc::dup2(null.as_raw_fd(), 2);
            let out = f();
            libc::dup2(saved, 2);
            libc::close(saved);
            out
        }
    }
    #[cfg(not(unix))]
    {
        f()
    }
}
