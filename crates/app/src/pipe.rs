//! A closed standard output (`app predict ... | head -1`) ends the program quietly, as ripgrep
//! does: writes return [`ClosedPipe`], and `main` exits 0 without a message when it sees one.

/// Standard output was closed by the reader.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct ClosedPipe;

/// Turns a write error into [`ClosedPipe`] when it is a broken pipe, or adds what was written.
pub fn classify(e: std::io::Error, what: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(ClosedPipe)
    } else {
        anyhow::Error::new(e).context(what.to_string())
    }
}

/// Whether `e` (anywhere in its chain) is a closed pipe.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<ClosedPipe>()
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes one line to standard output; a closed pipe ends the program at once with status 0
/// (every file the program writes is written atomically, so nothing half-written is left).
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(2);
    }
}

/// `println!` that ends the program quietly when standard output is a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::pipe::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::pipe::write_line(format_args!($($arg)*))
    };
}
