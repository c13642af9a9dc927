//! Spotting a Flux command that asks the instance for resources of its own (`flux run`,
//! `flux submit`, …) inside a command or script.
//!
//! Submit mode runs the command as one job holding every broker (`flux submit -N size …
//! --watch`). A `flux run -N3 app` inside it is a second job that waits for nodes the first
//! one holds, so the MiniCluster hangs without a word. This finds such commands so that
//! validation can refuse them with the fix, and the launchers can run them as rank 0's initial
//! program instead.
//!
//! It reads shell text only as far as needed: commands are split at `;`, `&`, `|`, newlines,
//! parentheses and backquotes outside quotes (so `$(…)`, loops and `&&` chains are looked
//! into), comments are skipped, and `sh -c '…'` is read recursively. Variables are not
//! expanded, so a command hidden behind `$CMD` is not seen.

/// Subcommands of `flux` that submit a job to the enclosing instance and need its resources.
const JOB_SUBCOMMANDS: [&str; 5] = ["run", "submit", "batch", "alloc", "bulksubmit"];

/// Commands that run the rest of their words as a command (after their own options).
const WRAPPERS: [&str; 16] = [
    "env", "exec", "time", "nohup", "command", "nice", "timeout", "stdbuf", "sudo", "setsid",
    "numactl", "taskset", "chrt", "ionice", "strace", "ltrace",
];

/// Shells whose `-c STRING` is read as a command in turn.
const SHELLS: [&str; 6] = ["sh", "bash", "dash", "zsh", "ksh", "ash"];

/// Words that begin or end a compound command, before the command itself.
const KEYWORDS: [&str; 10] = [
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "}",
];

/// Options of the job subcommands that take the next word as their value (for the prefix
/// shown in the fix: `flux run -N 3`).
const VALUE_OPTIONS: [&str; 14] = [
    "-N",
    "-n",
    "-c",
    "-g",
    "-t",
    "-o",
    "-S",
    "-q",
    "--nodes",
    "--ntasks",
    "--cores-per-task",
    "--gpus-per-task",
    "--time-limit",
    "--queue",
];

/// A Flux command found inside a command or script that submits a job of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NestedFlux {
    /// The command as found, its words joined by spaces (`flux run -N3 hostname`).
    pub command: String,
    /// The `flux` subcommand with its options up to the program (`flux run -N3`).
    pub prefix: String,
}

/// The first Flux job command (`flux run|submit|batch|alloc|bulksubmit`, `flux mini …`,
/// `flux job submit`) in `text`, read as shell code.
pub fn nested_flux_command(text: &str) -> Option<NestedFlux> {
    nested_in(text, 0)
}

/// How deep `sh -c` strings are followed; deeper is not a real command.
const MAX_DEPTH: usize = 4;

fn nested_in(text: &str, depth: usize) -> Option<NestedFlux> {
    simple_commands(text)
        .iter()
        .find_map(|words| nested_in_words(words, depth))
}

fn nested_in_words(words: &[String], depth: usize) -> Option<NestedFlux> {
    let mut rest = words;
    // Assignments, keywords and wrappers (with their options) before the program.
    loop {
        let first = rest.first()?;
        let program = basename(first);
        if is_assignment(first) || KEYWORDS.contains(&first.as_str()) {
            rest = &rest[1..];
        } else if WRAPPERS.contains(&program) {
            rest = &rest[1..];
            while rest.first().is_some_and(|w| is_wrapper_argument(w)) {
                rest = &rest[1..];
            }
        } else {
            break;
        }
    }
    let program = basename(&rest[0]);
    if SHELLS.contains(&program) && depth < MAX_DEPTH {
        return shell_command_string(&rest[1..]).and_then(|s| nested_in(s, depth + 1));
    }
    if program != "flux" {
        return None;
    }
    // `flux [OPTIONS] SUBCOMMAND …`, where `mini` and `job` take one more word.
    let mut i = 1;
    while rest.get(i).is_some_and(|w| w.starts_with('-')) {
        i += 1;
    }
    let sub = rest.get(i)?.as_str();
    let sub_end = match sub {
        "mini"
            if rest
                .get(i + 1)
                .is_some_and(|s| JOB_SUBCOMMANDS.contains(&s.as_str())) =>
        {
            i + 2
        }
        "job" if rest.get(i + 1).is_some_and(|s| s == "submit") => i + 2,
        s if JOB_SUBCOMMANDS.contains(&s) => i + 1,
        _ => return None,
    };
    let mut options_end = sub_end;
    while let Some(w) = rest.get(options_end).filter(|w| w.starts_with('-')) {
        options_end += if VALUE_OPTIONS.contains(&w.as_str()) {
            2
        } else {
            1
        };
    }
    let options_end = options_end.min(rest.len());
    Some(NestedFlux {
        command: rest.join(" "),
        prefix: rest[..options_end].join(" "),
    })
}

/// The string after `-c` (alone or in a cluster such as `-ec`) of a shell's arguments.
fn shell_command_string(args: &[String]) -> Option<&str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-o" || a == "+o" {
            it.next(); // a shell option's name
            continue;
        }
        if !a.starts_with('-') || a == "--" {
            return None; // a script file, not a command string
        }
        if !a.starts_with("--") && a.contains('c') {
            return it.next().map(String::as_str);
        }
    }
    None
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// `NAME=value`, as a shell reads it before a command.
fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// An option or value a wrapper takes before its command: `-v`, `5`, `1h`, `0-3`, `X=1`.
fn is_wrapper_argument(word: &str) -> bool {
    word.starts_with('-') || word.starts_with(|c: char| c.is_ascii_digit()) || is_assignment(word)
}

/// The simple commands of shell text, each as its words with quotes removed.
fn simple_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    let end_word = |word: &mut Option<String>, words: &mut Vec<String>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut word, &mut words),
            '\n' | ';' | '&' | '|' | '(' | ')' | '`' => {
                end_word(&mut word, &mut words);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '#' if word.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(e) => word.get_or_insert_with(String::new).push(e),
            },
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if chars.peek().is_some_and(|n| "\"\\$`\n".contains(*n)) => {
                            if let Some(e) = chars.next().filter(|e| *e != '\n') {
                                w.push(e);
                            }
                        }
                        c => w.push(c),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut word, &mut words);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Option<String> {
        nested_flux_command(text).map(|n| n.command)
    }

    #[test]
    fn flux_job_commands_are_found_in_every_form() {
        let cases = [
            ("flux run -N3 hostname", "flux run -N3 hostname"),
            (
                "flux submit --wait -n 4 ./app",
                "flux submit --wait -n 4 ./app",
            ),
            ("flux batch -N2 job.sh", "flux batch -N2 job.sh"),
            ("flux alloc -N2", "flux alloc -N2"),
            (
                "flux bulksubmit echo {} ::: a b",
                "flux bulksubmit echo {} ::: a b",
            ),
            ("flux mini run -N2 hostname", "flux mini run -N2 hostname"),
            ("flux job submit job.json", "flux job submit job.json"),
            ("flux -v run hostname", "flux -v run hostname"),
            (
                "/mnt/flux/view/bin/flux run app",
                "/mnt/flux/view/bin/flux run app",
            ),
            ("OMP_NUM_THREADS=2 flux run app", "flux run app"),
            ("env A=1 time -p flux run app", "flux run app"),
            ("timeout 1h flux run app", "flux run app"),
            ("nice -n 5 flux run app", "flux run app"),
            ("bash -o pipefail -c 'flux run app'", "flux run app"),
            ("sh -c 'flux run -N2 hostname'", "flux run -N2 hostname"),
            ("bash -ec \"cd /x && flux run ./a\"", "flux run ./a"),
            (
                "sh -c \"sh -c 'flux submit --wait x'\"",
                "flux submit --wait x",
            ),
            ("cd /opt/app && flux run -N2 ./app", "flux run -N2 ./app"),
            (
                "echo start; flux run hostname | tee out",
                "flux run hostname",
            ),
            ("out=$(flux run hostname)", "flux run hostname"),
            (
                "for i in 1 2; do flux run -N1 echo $i; done",
                "flux run -N1 echo $i",
            ),
            (
                "#!/bin/bash\n# a comment: flux run\nif true; then\n  flux submit app\nfi\n",
                "flux submit app",
            ),
            ("start() {\n  flux run app\n}\nstart", "flux run app"),
            ("flux \\\n  run app", "flux run app"),
        ];
        for (text, want) in cases {
            assert_eq!(found(text).as_deref(), Some(want), "in {text:?}");
        }
    }

    #[test]
    fn everything_else_is_fine() {
        for text in [
            "hostname",
            "flux resource list",
            "flux start flux run -N2 hostname",
            "flux jobs -a",
            "flux getattr size",
            "flux exec -r all hostname",
            "echo 'flux run hostname'",
            "echo \"flux run hostname\"",
            "grep flux run.log",
            "./flux-run-helper -N2",
            "sh ./script-that-calls-flux-run.sh",
            "# flux run -N2 hostname",
            "mpirun -np 2 ./app",
            "lmp -v x 2 -in in.reaxc",
            "",
        ] {
            assert_eq!(found(text), None, "in {text:?}");
        }
    }

    #[test]
    fn the_prefix_is_the_subcommand_and_its_options() {
        let n = nested_flux_command("flux run -N3 --tasks-per-node=2 ./app -x").unwrap();
        assert_eq!(n.prefix, "flux run -N3 --tasks-per-node=2");
        let n = nested_flux_command("flux mini submit --wait app").unwrap();
        assert_eq!(n.prefix, "flux mini submit --wait");
        let n = nested_flux_command("flux run -N 3 -n 6 ./app").unwrap();
        assert_eq!(n.prefix, "flux run -N 3 -n 6");
    }

    #[test]
    fn unclosed_quotes_end_without_panic() {
        assert_eq!(found("echo 'open"), None);
        assert_eq!(found("flux run \"open"), Some("flux run open".into()));
    }

    #[test]
    fn shell_strings_are_followed_a_few_levels_deep() {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut text = "flux run x".to_string();
        for depth in 1..=MAX_DEPTH + 2 {
            text = format!("sh -c {}", quote(&text));
            let want = (depth <= MAX_DEPTH).then(|| "flux run x".to_string());
            assert_eq!(found(&text), want, "at depth {depth}: {text}");
        }
    }
}
