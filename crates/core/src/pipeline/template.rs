//! Placeholders in a step's command, environment and working directory:
//! `${parameters.NAME}`, `${data_paths.NAME}`, `${inputs.NAME}`, `${outputs.NAME}`.
//!
//! A value never becomes code: substituted into the script of a shell (`sh -c SCRIPT`,
//! and bash, dash, zsh, ksh alike) it is quoted as one word; anywhere else it is one
//! argument or one environment value as it is, which no shell reads. `${NAME}` and
//! `$NAME` without a dot are the shell's own variables and are left alone.

use std::collections::BTreeMap;
use std::fmt;

/// What a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placeholder {
    Parameter(String),
    DataPath(String),
    Input(String),
    Output(String),
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (namespace, name) = match self {
            Placeholder::Parameter(n) => ("parameters", n),
            Placeholder::DataPath(n) => ("data_paths", n),
            Placeholder::Input(n) => ("inputs", n),
            Placeholder::Output(n) => ("outputs", n),
        };
        write!(f, "${{{namespace}.{name}}}")
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// A text with placeholders, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; an unclosed `${`, or a `${namespace.name}` whose namespace is none of
    /// the four, is an error that says what to write.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("`${{` without its `}}` in `{text}`"));
            };
            let inner = &after[..end];
            match inner.split_once('.') {
                // The shell's own `${VAR}`: not ours.
                None => literal.push_str(&rest[start..start + 2 + end + 1]),
                Some((namespace, name)) => {
                    let placeholder = match namespace {
                        "parameters" => Placeholder::Parameter(name.to_owned()),
                        "data_paths" => Placeholder::DataPath(name.to_owned()),
                        "inputs" => Placeholder::Input(name.to_owned()),
                        "outputs" => Placeholder::Output(name.to_owned()),
                        other => {
                            return Err(format!(
                                "`${{{inner}}}` names `{other}`: placeholders are ${{parameters.NAME}}, \
                                 ${{data_paths.NAME}}, ${{inputs.NAME}} and ${{outputs.NAME}}"
                            ));
                        }
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Value(placeholder));
                }
            }
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The placeholders the text uses, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|part| match part {
            Part::Value(placeholder) => Some(placeholder),
            Part::Text(_) => None,
        })
    }

    /// The text with each placeholder replaced by its value, quoted for a shell when
    /// `for_shell`. Every placeholder must have a value (the pipeline was checked).
    pub fn render(&self, values: &BTreeMap<Placeholder, String>, for_shell: bool) -> String {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(literal) => text.push_str(literal),
                Part::Value(placeholder) => {
                    let value = values.get(placeholder).map_or("", String::as_str);
                    if for_shell {
                        text.push_str(&shell_quote(value));
                    } else {
                        text.push_str(value);
                    }
                }
            }
        }
        text
    }
}

/// `value` as one word of a POSIX shell: in single quotes, each `'` written `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Whether `program` is a shell that runs its `-c` argument as a script.
pub fn is_shell(program: &str) -> bool {
    let base = program.rsplit('/').next().unwrap_or(program);
    matches!(base, "sh" | "bash" | "dash" | "zsh" | "ksh")
}

/// The index of the script argument in `command`, if it runs a shell with `-c`.
pub fn shell_script_index(command: &[String]) -> Option<usize> {
    let program = command.first()?;
    if !is_shell(program) {
        return None;
    }
    let flag = command.iter().position(|arg| arg == "-c")?;
    (flag + 1 < command.len()).then_some(flag + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(Placeholder, &str)]) -> BTreeMap<Placeholder, String> {
        pairs.iter().map(|(p, v)| (p.clone(), (*v).to_owned())).collect()
    }

    #[test]
    fn placeholders_are_found_and_the_shells_own_variables_left_alone() {
        let template =
            Template::parse("cp ${data_paths.input_data} ${outputs.prepared}/data.csv $HOME ${HOME}").unwrap();
        let found: Vec<String> = template.placeholders().map(ToString::to_string).collect();
        assert_eq!(found, ["${data_paths.input_data}", "${outputs.prepared}"]);
        let text = template.render(
            &values(&[
                (Placeholder::DataPath("input_data".into()), "/d/in.csv"),
                (Placeholder::Output("prepared".into()), "/o"),
            ]),
            false,
        );
        assert_eq!(text, "cp /d/in.csv /o/data.csv $HOME ${HOME}");
    }

    #[test]
    fn a_mistyped_or_unclosed_placeholder_says_what_to_write() {
        let typo = Template::parse("echo ${parameter.model_name}").unwrap_err();
        assert!(
            typo.contains("`parameter`") && typo.contains("${parameters.NAME}"),
            "{typo}"
        );
        let open = Template::parse("echo ${parameters.x").unwrap_err();
        assert!(open.contains("without its"), "{open}");
    }

    #[test]
    fn a_value_in_a_shell_script_is_one_quoted_word() {
        let template = Template::parse("echo ${parameters.model_name}").unwrap();
        for hostile in [
            r#"x"; touch "$HOME/pwned"; echo ""#,
            "`touch /tmp/pwned`",
            "$(touch /tmp/pwned)",
            "it's",
        ] {
            let script = template.render(&values(&[(Placeholder::Parameter("model_name".into()), hostile)]), true);
            assert_eq!(script, format!("echo {}", shell_quote(hostile)));
            // Inside single quotes nothing is special but the quote, written '\''.
            let quoted = &script["echo ".len()..];
            assert!(quoted.starts_with('\'') && quoted.ends_with('\''));
            assert!(!quoted[1..quoted.len() - 1].replace(r"'\''", "").contains('\''));
        }
    }

    #[test]
    fn only_a_shells_dash_c_argument_is_a_script() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(shell_script_index(&argv(&["sh", "-c", "echo hi"])), Some(2));
        assert_eq!(
            shell_script_index(&argv(&["/bin/bash", "-e", "-c", "echo hi", "$0"])),
            Some(3)
        );
        assert_eq!(shell_script_index(&argv(&["python", "-c", "print(1)"])), None);
        assert_eq!(shell_script_index(&argv(&["sh", "script.sh"])), None);
        assert_eq!(shell_script_index(&argv(&["sh", "-c"])), None);
    }
}
