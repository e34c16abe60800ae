//! `tollgate completions SHELL` and `tollgate man`: generated from the same
//! clap definitions the parser uses, so they never drift from the flags.

use std::io::Write;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completions(shell: Shell, mut cmd: clap::Command) -> anyhow::Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "tollgate", &mut std::io::stdout());
    Ok(())
}

/// The man page (roff) on stdout: `tollgate man > tollgate.1`.
pub fn man(cmd: clap::Command) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    std::io::stdout().write_all(&out)?;
    Ok(())
}
