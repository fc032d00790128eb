#!/usr/bin/env bash
# Run the tests that launch bubblewrap as an unprivileged user, so the user-namespace path most
# users get is launched too (as root, bwrap drops the agent to a per-run uid instead).
# Usage: scripts/test-unprivileged.sh PYTHON [-x -q …] [TEST PATHS, default: those below]; as
# root only (CI): elsewhere the suite already ran unprivileged.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1; shift
USER_NAME=ptb-unprivileged
# The tests that launch bwrap (the attack suite under bwrap only), and those whose outcome
# depends on being root.
TESTS=(tests/unit/test_bwrap.py tests/unit/test_code_sandbox.py tests/unit/test_bench_code.py
       tests/unit/test_sandbox_choice.py tests/unit/test_collect_attacks.py
       tests/e2e/test_humaneval_isolation.py tests/e2e/test_attacks.py)

if [ "$(id -u)" -ne 0 ]; then
  echo "test-unprivileged: not root, so the suite above already launched bwrap unprivileged"
  exit 0
fi
id -u "$USER_NAME" >/dev/null 2>&1 ||
  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
work=$(mktemp -d /tmp/ptb-unprivileged.XXXXXX)
granted=()
cleanup() {
  [ ${#granted[@]} -eq 0 ] || setfacl -x "u:$USER_NAME" "${granted[@]}"
  rm -rf "$work"
}
trap cleanup EXIT
chown "$USER_NAME:$USER_NAME" "$work"
as_user=(env HOME="$work" TMPDIR="$work" PYTHONDONTWRITEBYTECODE=1
         setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups)
# A checkout or a Python under a private folder (root's home is 0700 on Debian): let this user
# (only) pass through each closed ancestor for the run, by an ACL entry removed on exit.
for target in "$PWD" "$(readlink -f "$py")"; do
  dir=$target
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    if ! "${as_user[@]}" test -x "$dir" 2>/dev/null; then
      setfacl -m "u:$USER_NAME:x" "$dir"
      granted+=("$dir")
    fi
  done
done
# The tests start the venv's Python again (sys.executable), so that must work too.
probe="import subprocess, sys; subprocess.run([sys.executable, '-c', 'import posttrainbench'], check=True)"
if ! "${as_user[@]}" "$py" -c "import pytest; $probe" >"$work/probe.log" 2>&1; then
  echo "test-unprivileged: $USER_NAME cannot run $py ($(tail -1 "$work/probe.log")): the" \
       "checkout, the venv and the Python it links to must be readable by other users" >&2
  exit 1
fi
opts=() picked=()
for arg in "$@"; do
  case "$arg" in -*) opts+=("$arg") ;; *) picked+=("$arg") ;; esac
done
[ ${#picked[@]} -eq 0 ] || TESTS=("${picked[@]}")
if ! "${as_user[@]}" bwrap --unshare-all --ro-bind / / true 2>"$work/bwrap.err"; then
  echo "test-unprivileged: user namespaces are off for $USER_NAME here ($(tail -1 \
"$work/bwrap.err")): checking that runs are refused naming why, instead"
  TESTS=(tests/unit/test_sandbox_choice.py::test_bwrap_isolates_here_or_runs_are_refused_naming_why)
else
  echo "test-unprivileged: the bwrap tests again as $USER_NAME (uid $(id -u "$USER_NAME"))"
fi
"${as_user[@]}" "$py" -m pytest -p no:cacheprovider --basetemp="$work/pytest" --durations=10 \
  -k "bwrap or not host" ${opts[@]+"${opts[@]}"} "${TESTS[@]}"
