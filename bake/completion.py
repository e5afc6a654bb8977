"""``bake complete``: a bash completion script made from the command line's own parsers (as
``openstack complete`` makes one from its commands).

It completes the commands, each command's options (and ``bake stack``'s actions), the
values of options with choices (``-f json``, ``-c name``, ``--os-interface``), and files
elsewhere. Example::

    bake complete > /etc/bash_completion.d/bake     # or: source <(bake complete)
"""

from __future__ import annotations

import argparse
import shlex


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """What may follow at this level: option strings, then subcommands."""
    options = [o for a in parser._actions for o in a.option_strings if a.help != argparse.SUPPRESS]
    return options + list(_subparsers(parser))


def _choices(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """``case`` branches: an option with choices completes them (``CMD:-f) ...;;``)."""
    branches = []
    for action in parser._actions:
        if action.option_strings and action.choices:
            pattern = "|".join(f"{prefix}:{o}" for o in action.option_strings)
            values = " ".join(str(c) for c in action.choices)
            branches.append(f"        {pattern}) words={shlex.quote(values)} ;;")
    return branches


def bash(parser: argparse.ArgumentParser, commands: dict[str, argparse.ArgumentParser]) -> str:
    """The completion script for ``parser``'s program and its ``commands``' parsers."""
    prog = parser.prog
    top = [*_words(parser), *commands]
    options = [f"        '') words={shlex.quote(' '.join(top))} ;;"]
    values = _choices(parser, "")
    for name, sub in commands.items():
        options.append(f"        {name}) words={shlex.quote(' '.join(_words(sub)))} ;;")
        values += _choices(sub, name)
    function = f"_{prog.replace('-', '_')}"
    return f"""# bash completion for {prog} (made by `{prog} complete`)
{function}() {{
    local cur prev cmd='' words='' w
    cur=${{COMP_WORDS[COMP_CWORD]}}
    prev=${{COMP_WORDS[COMP_CWORD-1]}}
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case " {" ".join(commands)} " in
            *" $w "*) cmd=$w; break ;;
        esac
    done
    case "$cmd:$prev" in
{chr(10).join(values)}
    esac
    if [ -n "$words" ]; then
        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
        return 0
    fi
    case "$cmd" in
{chr(10).join(options)}
    esac
    if [ -z "$cmd" ] || [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -W "$words" -f -- "$cur")
    fi
    return 0
}}
complete -o filenames -F {function} {prog}"""
