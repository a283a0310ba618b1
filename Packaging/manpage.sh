#!/usr/bin/env bash
# Writes baton(1) in roff to standard output, from the CLI's own help texts (one source of truth):
#   bash Packaging/manpage.sh path/to/baton VERSION
set -euo pipefail
baton=$1 version=$2
# roff-safe verbatim text: backslashes doubled, lines starting with . or ' protected.
verbatim() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
printf '.TH BATON 1 "" "baton %s" "User Commands"\n' "$version"
printf '.SH NAME\nbaton \\- zero-downtime binary upgrades for servers on Linux\n'
printf '.SH SYNOPSIS\n.B baton\n.I subcommand\n[\\fIoptions\\fR]\n'
printf '.SH DESCRIPTION\n.nf\n'
"$baton" --help | verbatim
printf '.fi\n'
# Every subcommand `baton --help` lists (a fixed list here had left out promote, abort and metrics).
subcommands=$("$baton" --help | awk '
    /^SUBCOMMANDS:/ { inside = 1; next }
    inside && /^[^ ]/ { inside = 0 }
    inside && /^  [a-z][a-z-]*( |$)/ { print $1 }')
for sub in $subcommands; do
    printf '.SH "BATON %s"\n.nf\n' "$(tr '[:lower:]' '[:upper:]' <<<"$sub")"
    "$baton" help "$sub" | verbatim
    printf '.fi\n'
done
printf '.SH FILES\n.TP\n.I /lib/systemd/system/baton@.service\nruns the app in /srv/NAME (watch.conf, its binary) under a master: systemctl enable \\-\\-now baton@NAME; systemctl reload baton@NAME upgrades and fails when the upgrade fails.\n'
printf '.SH SEE ALSO\n.BR systemctl (1),\n.BR systemd.service (5)\n'
