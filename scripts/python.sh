#!/usr/bin/env bash
# Installs the official Kubernetes Python client (`pip install kubernetes`) into a virtualenv for
# tests/python_client.rs, which runs tests/python/client_check.py against `orchestra up`.
#
#   scripts/python.sh          make the virtualenv and install the client (idempotent: nothing
#                              is done when the client imports already); print the interpreter
#
# The virtualenv is at ORCHESTRA_PYTHON_VENV (/opt/orchestra-python); the test finds its
# interpreter there, or at ORCHESTRA_PYTHON when that is set. On a fresh Debian machine run as
# root it first installs `python3` and `python3-venv` with apt-get when `python3 -m venv` cannot
# make a virtualenv. The client comes from PyPI through pip.
set -euo pipefail

VENV="${ORCHESTRA_PYTHON_VENV:-/opt/orchestra-python}"
# The client's major version follows the Kubernetes minor (31 is 1.31); pin the range we test.
REQUIREMENT='kubernetes>=31,<36'

die() { echo "scripts/python.sh: $*" >&2; exit 1; }

python="$VENV/bin/python"
if [ -x "$python" ] && "$python" -c 'import kubernetes' >/dev/null 2>&1; then
  version="$("$python" -c 'import kubernetes; print(kubernetes.__version__)')"
  echo "kubernetes $version already in $VENV" >&2
  echo "$python"
  exit 0
fi

# Debian splits venv's ensurepip into python3-venv: `import venv` alone is not enough.
can_make_venv() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}
if ! can_make_venv; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing python3 python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
    can_make_venv || die "python3 -m venv still cannot make a virtualenv after installing python3-venv"
  else
    die "python3 with the venv module is missing (Debian: apt-get install -y python3 python3-venv, as root)"
  fi
fi

# A virtualenv whose interpreter no longer runs (its base Python gone) is made again.
if ! "$python" -c 'import sys' >/dev/null 2>&1; then
  echo "making the virtualenv $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv --clear "$VENV"
fi
echo "installing $REQUIREMENT into $VENV" >&2
"$python" -m pip install --quiet --disable-pip-version-check "$REQUIREMENT" >&2
version="$("$python" -c 'import kubernetes; print(kubernetes.__version__)')" ||
  die "kubernetes does not import after pip installed it into $VENV"
echo "kubernetes $version installed in $VENV" >&2
echo "$python"
