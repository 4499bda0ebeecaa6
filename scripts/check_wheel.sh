#!/usr/bin/env bash
# Build the wheel, install it into a clean venv (not the checkout's) and run it from
# outside the checkout: what a user who pip-installs FazAI gets must start, and must
# carry every data file the package reads (JSON schemas, the sandbox config, the
# emulator's data), which an editable install would hide.
# Usage: scripts/check_wheel.sh   (after scripts/install.sh test)
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Built from a copy of the files git knows (tracked, or new and not ignored): a stale
# build/ left in the checkout cannot slip deleted modules into the wheel.
bash scripts/copy_git_files.sh "$work/src"
.venv/bin/python -m build --wheel --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/fazai-*.whl)"

# Every non-Python file under controller/ that git tracks must be in the wheel.
.venv/bin/python - "$wheel" <<'PY'
import os, subprocess, sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
tracked = subprocess.run(["git", "ls-files", "controller"], capture_output=True, text=True,
                         check=True).stdout.split()
# A tracked link to a folder (controller/policy/defaults -> policies/) ships the YAML
# files in it, under the link's name.
tracked = [f"{p}/{n}" for p in tracked if os.path.isdir(p)
           for n in sorted(os.listdir(p)) if n.endswith(".yaml")] + [
    p for p in tracked if not os.path.isdir(p)]
missing = [p for p in tracked if not p.endswith(".py") and p not in names]
missing += [p for p in tracked if p.endswith(".py") and p not in names]
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    missing.append("LICENSE (in .dist-info/licenses/)")
if missing:
    sys.exit("the wheel lacks: " + ", ".join(missing))
print(f"wheel {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files, none missing")
PY

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel"
cd "$work"  # away from the checkout: only the installed wheel can be imported
"$work/venv/bin/fazai" --version
"$work/venv/bin/fazai" schema >schema.json
"$work/venv/bin/fazai" schema --plan >plan-schema.json
"$work/venv/bin/python" - <<'PY'
import json
kinds = json.load(open("schema.json"))
assert {"Node", "File", "FirewallRule", "HostOverride"} <= set(kinds), sorted(kinds)
assert json.load(open("plan-schema.json"))["type"] == "object"
import controller.reconcile.sandbox as s  # the sandbox's own fazai.yaml is package data
assert b"ControllerConfig" in s.default_config_text()
assert "Policy" in kinds, sorted(kinds)
from controller.policy.defaults import shipped_policies  # policies/, packaged by the link
shipped = {p.name for p in shipped_policies()}
assert {"fazai-system-users", "fazai-access-files", "fazai-firewall-rules",
        "fazai-agent-proposals"} <= shipped, sorted(shipped)
print(f"fazai schema: {len(kinds)} kinds; plan schema, sandbox config and "
      f"{len(shipped)} default policies present")
PY
