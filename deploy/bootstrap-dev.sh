#!/usr/bin/env bash
# Install what `make demo` and `make test` need on a fresh Debian machine: Debian packages (when
# root and missing), then a virtual environment in .venv with the project and its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

want_debian=(dcmtk)
if [ "${1:-}" = "--test" ]; then
  # Orthanc (+ its DICOMweb plugin) is the PACS in the tests; dciodvfy checks every object we write.
  want_debian+=(chromium orthanc orthanc-dicomweb dicom3tools)
fi

missing=()
for pkg in "${want_debian[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "Installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Missing Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
touch .venv/.installed
