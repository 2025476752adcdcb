//! `muster completions SHELL` and `muster man`: shell completions (clap_complete) and the man
//! page (clap_mangen), both generated from the CLI definition in `main.rs`, so they never fall
//! behind it. Packaging runs them at build time; nothing at run time depends on them.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "muster", &mut out);
    write_stdout(&out)
}

/// Writes muster(1) to stdout, or, with `out_dir`, muster.1 and one page per subcommand there.
pub fn man(cmd: clap::Command, out_dir: Option<&Path>) -> anyhow::Result<()> {
    match out_dir {
        Some(dir) => clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing man pages to {}", dir.display())),
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("rendering the man page")?;
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    fn subcommands() -> Vec<String> {
        crate::Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect()
    }

    #[test]
    fn completions_offer_every_subcommand_in_each_shell() {
        let names = subcommands();
        assert!(names.len() >= 10, "{names:?}");
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut crate::Cli::command(), "muster", &mut out);
            let text = String::from_utf8(out).expect("utf-8");
            for name in &names {
                assert!(text.contains(name.as_str()), "{shell}: no {name}");
            }
            // Options of a subcommand are completed too.
            assert!(
                text.contains("wait-secs"),
                "{shell}: no --wait-secs of remove"
            );
        }
    }

    #[test]
    fn man_page_lists_every_subcommand_and_writes_one_page_each() {
        let mut out = Vec::new();
        clap_mangen::Man::new(crate::Cli::command())
            .render(&mut out)
            .expect("render");
        let page = String::from_utf8(out).expect("utf-8");
        assert!(page.contains(".TH muster 1"), "{page}");
        assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
        for name in subcommands() {
            let entry = format!("muster\\-{}(1)", name.replace('-', "\\-"));
            assert!(page.contains(&entry), "no {entry} in the page");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        super::man(crate::Cli::command(), Some(dir.path())).expect("generate_to");
        for name in subcommands() {
            let page = dir.path().join(format!("muster-{name}.1"));
            assert!(page.is_file(), "{} missing", page.display());
        }
        assert!(dir.path().join("muster.1").is_file());
    }
}
