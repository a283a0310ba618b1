#!/usr/bin/env bash
# Writes the DocC article "CLI reference" from the CLI's own help texts (one source of truth, as
# Packaging/manpage.sh does for baton(1)): `baton --help`, then `baton help SUB` for every
# subcommand `baton --help` lists.
#
#   swift build --product baton
#   bash scripts/cli-reference.sh .build/debug/baton > Sources/Baton/Baton.docc/CLIReference.md
#
# DocumentationTests runs it with the built `baton` and fails when the committed article differs:
# after changing a help text, run the line above.
set -euo pipefail
baton=${1:?usage: cli-reference.sh path/to/baton}
export COLUMNS=100   # swift-argument-parser wraps help at the terminal's width: make it fixed

subcommands=$("$baton" --help | awk '
    /^SUBCOMMANDS:/ { inside = 1; next }
    inside && /^[^ ]/ { inside = 0 }
    inside && /^  [a-z][a-z-]*( |$)/ { print $1 }')

cat <<'HEAD'
# CLI reference

Every subcommand and option of `baton`, as its own help prints them.

## Overview

This page is generated from the argument parser's help texts by `scripts/cli-reference.sh`
(`DocumentationTests` fails when it differs from what `baton help` prints); `baton help
<subcommand>` and `man baton` say the same. What the commands are for, their exit codes and the
control socket are in <doc:OperatingIt>.

## baton

```console
$ baton --help
HEAD
"$baton" --help
printf '```\n'
for sub in $subcommands; do
    printf '\n## baton %s\n\n```console\n$ baton help %s\n' "$sub" "$sub"
    "$baton" help "$sub"
    printf '```\n'
done
