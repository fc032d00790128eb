#!/usr/bin/env bash
# Wheels for the device machine's `harness` stage (benchmarks/engine_gpu.sh): what posttrainbench
# requires (inspect-ai, pydantic, typer, trl, datasets …, and what they require) that the device
# image lacks, at requirements-dev.txt's pins where it pins them, for the image's Python 3.12 on
# manylinux x86_64. The image's own packages (torch, transformers, numpy …; the list in the device
# library's KINDS.md, "Python packages already there") are left out: its versions are used.
#
#   bash benchmarks/device_wheels.sh [DEST]   # here, with PyPI; DEST (.whl-harness/one) is ignored
#   then, on the device: run(carry=[".whl-harness/one"], command="python3 -m pip install -q
#     --no-index --no-deps --no-compile --target /tmp/site .whl-harness/one/*.whl &&
#     PYTHONPATH=/tmp/site bash benchmarks/engine_gpu.sh harness")
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl-harness/one}
kinds=${KINDS_MD:-/work/.library/device/KINDS.md}
py=${PYTHON:-.venv/bin/python}
[ -f "$kinds" ] || { echo "no $kinds: set KINDS_MD to the device library's KINDS.md" >&2; exit 2; }
platforms=(--python-version 3.12 --implementation cp --only-binary=:all:)
for n in 39 35 34 31 28 27 24 17; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The project's own requirements, pinned where requirements-dev.txt pins them; torch and the
# other packages of the image are removed after resolving (their versions there are kept).
"$py" - "$work/reqs.txt" <<'EOF'
import sys, tomllib
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
deps = tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]
pins = {}
for line in Path("requirements-dev.txt").read_text().splitlines():
    if line.strip()[:1].isalnum():
        req = Requirement(line)
        pins[canon(req.name)] = str(req.specifier)
out = [f"{req.name}{pins.get(canon(req.name), req.specifier)}" for req in map(Requirement, deps)]
Path(sys.argv[1]).write_text("\n".join(out) + "\n")
EOF
# Resolved for this machine's Python (torch's CUDA wheels have no 3.12 x86_64 set to resolve
# against here), then fetched for the image's; markers differ only below 3.11.
"$py" -m pip install --quiet --dry-run --ignore-installed --target "$work/none" \
    --report "$work/report.json" -r "$work/reqs.txt"
# the image's packages: the comma-separated list after "Packages:" in KINDS.md
grep -o 'Packages: .*' "$kinds" | head -1 | sed 's/^Packages: //; s/\.$//' | tr ',' '\n' \
    > "$work/present.txt"
"$py" - "$work/report.json" "$work/present.txt" "$work/want.txt" <<'EOF'
import json, sys
from pathlib import Path
from packaging.utils import canonicalize_name as canon
present = {canon(name) for name in Path(sys.argv[2]).read_text().split()}
if len(present) < 100:
    sys.exit(f"only {len(present)} package names read from KINDS.md: has its list moved?")
want = []
for item in json.loads(Path(sys.argv[1]).read_text())["install"]:
    meta = item["metadata"]
    name = canon(meta["name"])
    if name not in present and not name.startswith("nvidia-"):
        want.append(f"{meta['name']}=={meta['version']}")
Path(sys.argv[3]).write_text("\n".join(sorted(want)) + "\n")
EOF
mkdir -p "$dest"
rm -f "$dest"/*.whl  # one version of each: two stop the install there
"$py" -m pip download --quiet --no-deps "${platforms[@]}" -d "$dest" -r "$work/want.txt"
# inspect-ai's wheel carries its docker sandbox tools for two architectures (28 MiB of 34): the
# harness stage starts no sandbox, and the carry limit is 64 MiB, so they are left out.
"$py" - "$dest" <<'EOF'
import sys, zipfile
from pathlib import Path
(wheel,) = Path(sys.argv[1]).glob("inspect_ai-*.whl")
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
    for info in src.infolist():
        if info.filename.startswith("inspect_ai/binaries/"):
            continue
        data = src.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines()
            data = "\n".join(x for x in lines if not x.startswith("inspect_ai/binaries/")).encode()
        out.writestr(info, data)
slim.replace(wheel)
EOF
echo "$(ls "$dest" | wc -l) wheels, $(du -sm "$dest" | cut -f1) MiB in $dest (carry limit 64 MiB):"
tr '\n' ' ' < "$work/want.txt"
echo
