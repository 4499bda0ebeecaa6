#!/usr/bin/env bash
# Copy the files git knows in the current checkout (tracked, or new and not ignored;
# not those deleted in the working tree) to DEST, keeping their paths.
# Usage: scripts/copy_git_files.sh DEST
# One tar reads the whole NUL-separated list (xargs would split a long one into
# several archives, and the reading tar stops at the end of the first); any failure
# to read a file fails the copy.
set -euo pipefail
dest="$1"
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard --deduplicate \
  | python3 -c '
import os, sys
names = sys.stdin.buffer.read().split(b"\0")
sys.stdout.buffer.write(b"".join(n + b"\0" for n in names if n and os.path.lexists(n)))
' \
  | tar --null --no-recursion -T - -cf - \
  | tar -xf - -C "$dest"
