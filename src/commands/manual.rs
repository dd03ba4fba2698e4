//! `backfilld completions` and `backfilld man`: made from the command line's own
//! definition (`cli::Cli`), so that they never disagree with `--help`.

use clap::CommandFactory;

use super::Error;
use crate::cli::Cli;

/// `backfilld completions SHELL`: the completion script, made by clap_complete.
pub fn completions(shell: clap_complete::Shell) -> Result<String, Error> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "backfilld", &mut out);
    Ok(String::from_utf8_lossy(&out).trim_end().to_string())
}

/// `backfilld man`: one manual page in roff, made by clap_mangen: serve's flags (what a bare
/// `backfilld` takes), then a section for each subcommand with its synopsis and flags.
/// clap_mangen's own SUBCOMMANDS section names a page per subcommand (`backfilld-worker(1)`),
/// which is not installed: this page holds them all instead, and names no other page.
pub fn man() -> Result<String, Error> {
    let mut cmd = Cli::command();
    // Full names (`backfilld worker`) in the subcommands' synopses.
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    let io = |source| Error::Read { what: "the manual page".into(), source };
    man.render_title(&mut out).map_err(io)?;
    man.render_name_section(&mut out).map_err(io)?;
    man.render_synopsis_section(&mut out).map_err(io)?;
    man.render_description_section(&mut out).map_err(io)?;
    man.render_options_section(&mut out).map_err(io)?;
    for sub in visible_subcommands(&cmd) {
        describe(sub, "SH", &mut out).map_err(io)?;
    }
    man.render_version_section(&mut out).map_err(io)?;
    Ok(String::from_utf8_lossy(&out).trim_end().to_string())
}

/// The subcommands a page describes: all but the hidden ones and clap's `help`.
fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// A subcommand's part of the page under a heading of `level` (`SH`, or `SS` for a
/// subcommand's own subcommands, such as `backfilld token create`): what it does, its
/// synopsis, its flags and its closing notes.
fn describe(sub: &clap::Command, level: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
    let about = sub.get_long_about().or_else(|| sub.get_about()).map(|a| a.to_string()).unwrap_or_default();
    let heading = if level == "SH" { name.to_uppercase() } else { name.to_string() };
    out.extend_from_slice(format!(".{level} \"{heading}\"\n{}\n.PP\n", roff_text(&about)).as_bytes());
    let page = clap_mangen::Man::new(sub.clone());
    let mut section = Vec::new();
    page.render_synopsis_section(&mut section)?;
    if sub.get_arguments().any(|a| !a.is_hide_set() && a.get_id() != "help") {
        page.render_options_section(&mut section)?;
    }
    if sub.get_after_long_help().is_some() || sub.get_after_help().is_some() {
        page.render_extra_section(&mut section)?;
    }
    // The sub-page's own headings become paragraphs of this part; its closing notes (the
    // last of it) keep their lines, which line up a table.
    let mut section = String::from_utf8_lossy(&section)
        .replace(".SH SYNOPSIS\n", "")
        .replace(".SH OPTIONS\n", ".PP\nOptions:\n")
        .replace(".SH EXTRA\n", ".PP\n.nf\n");
    if section.contains(".nf\n") {
        section.push_str(".fi\n");
    }
    out.extend_from_slice(section.as_bytes());
    for nested in visible_subcommands(sub) {
        describe(nested, "SS", out)?;
    }
    Ok(())
}

/// `text` as roff body text: a line that starts with `.` or `'` would be read as a request.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with(['.', '\'']) { format!("\\&{l}") } else { l.replace('\\', "\\e") })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_page_describes_every_subcommand_and_names_no_other_page() {
        let page = man().unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH backfilld"), "{}", &page[..200]);
        for sub in ["SERVE", "IMPORT", "EXPORT", "BACKUP", "TOKEN", "USER", "WORKER", "DEMO", "COMPLETIONS", "MAN"] {
            assert!(page.contains(&format!(".SH \"BACKFILLD {sub}\"")), "no section for {sub}");
        }
        assert!(page.contains(".SS \"backfilld token create\""), "the groups' commands are in it");
        assert!(page.contains("\\-\\-until\\-idle"), "the worker's flags are in it");
        // No `backfilld-worker(1)`-style reference to a page that is not installed.
        assert!(!page.contains("(1)"), "{page}");
    }
}
