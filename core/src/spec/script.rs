//! `commands.script`: a script that stands in for the command. The flux-operator writes it to a
//! file through a shell here-document and runs that file with `/bin/bash`, so its users
//! escape `$` as `\$` (its documentation says so). The file we write must hold what theirs
//! holds.

/// Where the script is written, inside the broker's config directory.
pub const SCRIPT_FILE_NAME: &str = "custom-entrypoint.sh";
/// The shell that runs the script, as in the flux-operator.
pub const SCRIPT_SHELL: &str = "/bin/bash";

/// The script's text as an unquoted here-document gives it: `\$`, `` \` `` and `\\` lose
/// their backslash and a backslash-newline joins two lines; every other backslash stays.
///
/// Unescaped `$…` is left alone, so it is expanded when the script runs (the flux-operator
/// expands it while writing the file, where task variables such as `FLUX_TASK_RANK` are
/// not set yet). The file ends with one newline.
pub fn script_file_text(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 1);
    let mut chars = script.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('$' | '`' | '\\')) => out.push(e),
            Some('\n') => {}
            Some(e) => {
                out.push('\\');
                out.push(e);
            }
            None => out.push('\\'),
        }
    }
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_resolve_as_a_here_document_resolves_them() {
        assert_eq!(
            script_file_text("echo \"rank \\${FLUX_TASK_RANK}\"\n"),
            "echo \"rank ${FLUX_TASK_RANK}\"\n"
        );
        assert_eq!(script_file_text("a \\`b\\` \\\\ c"), "a `b` \\ c\n");
        assert_eq!(script_file_text("echo one \\\ntwo\n\n\n"), "echo one two\n");
        assert_eq!(
            script_file_text("printf 'a\\tb\\n' \"\\\"\" \\"),
            "printf 'a\\tb\\n' \"\\\"\" \\\n"
        );
        assert_eq!(script_file_text("echo $HOME"), "echo $HOME\n");
    }
}
