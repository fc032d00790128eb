#!/usr/bin/env bash
# The system packages `make demo` (argument `demo`) or the test suite (`test`, the default) needs
# on Debian/Ubuntu, installed where missing.
# As root: apt-get installs only what is missing, quietly; nothing at all when all is present.
# Not as root, with something missing: stops at once with the exact `sudo apt-get install` line.
set -euo pipefail

# package:command pairs; a package is needed when its command is not on PATH.
# make, python3-venv, util-linux (setsid, setpriv, runuser); the sandbox: bubblewrap (the default
# backend), socat (bridges the relay and the egress proxy into it), podman + runc (the podman
# backend's real launch test); Node.js + npm (`ptb agents install`: the four agent CLIs, Gemini CLI
# needs Node 20); chromium (the browser tests of `ptb site` and `ptb view`).
PLAIN=(make:make util-linux:setpriv bubblewrap:bwrap socat:socat podman:podman runc:runc
       nodejs:node npm:npm chromium:chromium)
# SLURM, a single-node cluster the sweep tests start themselves, and munge, its authentication;
# without recommends: slurm-wlm would pull ~40 packages.
SLURM=(slurmctld:slurmctld slurmd:slurmd slurm-client:sbatch munge:munged)
NODE_MIN=20
case "${1:-test}" in
  test) ;;
  demo) PLAIN=(make:make bubblewrap:bwrap socat:socat); SLURM=(); NODE_MIN=0 ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac

missing() {  # the packages among "$@" (package:command) whose command is missing
  local pair
  for pair in "$@"; do
    command -v "${pair#*:}" >/dev/null 2>&1 || printf '%s\n' "${pair%%:*}"
  done
}

mapfile -t plain < <(missing "${PLAIN[@]}")
python3 -c "import venv, ensurepip" 2>/dev/null || plain+=(python3-venv)
mapfile -t slurm < <(missing ${SLURM[@]+"${SLURM[@]}"})

all=(${plain[@]+"${plain[@]}"} ${slurm[@]+"${slurm[@]}"})
if [ ${#all[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    cmd=()
    [ ${#plain[@]} -eq 0 ] || cmd+=("sudo apt-get install -y ${plain[*]}")
    [ ${#slurm[@]} -eq 0 ] || cmd+=("sudo apt-get install -y --no-install-recommends ${slurm[*]}")
    line="${cmd[0]}"
    [ ${#cmd[@]} -eq 1 ] || line="${cmd[0]} && ${cmd[1]}"
    echo "missing system packages: ${all[*]}; install them with: $line" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [[ " ${plain[*]} " == *" nodejs "* ]] && [ "$NODE_MIN" -gt 0 ]; then
    candidate=$(apt-cache policy nodejs | awk '/Candidate:/ {print $2}')
    if [ "${candidate%%.*}" -lt "$NODE_MIN" ] 2>/dev/null; then
      echo "Node.js $NODE_MIN or newer is needed and apt offers $candidate (Debian 12's is 18):" \
           "install it from https://github.com/nodesource/distributions, then rerun" >&2
      exit 1
    fi
  fi
  echo "installing system packages: ${all[*]}" >&2
  [ ${#plain[@]} -eq 0 ] || apt-get install -y -qq "${plain[@]}" >/dev/null
  [ ${#slurm[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${slurm[@]}" >/dev/null
fi

if [ "$NODE_MIN" -gt 0 ] && [ "$(node -p 'process.versions.node.split(".")[0]')" -lt "$NODE_MIN" ]
then
  echo "Node.js $NODE_MIN or newer is needed (this machine has $(node --version); Debian 12's" \
       "is 18): install it from https://github.com/nodesource/distributions, then rerun" >&2
  exit 1
fi
