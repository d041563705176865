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

if [ "${1:-}" = "--test" ]; then
  # OHIF Viewer's built files (the `@ohif/app` npm package's dist/), for the test that opens a
  # study from our DICOMweb server in it. Pinned and checked; fetched once into var/ohif/.
  ohif_version=3.13.2
  ohif_sha256=b189d3963bfc58e9394a9db8c7be75d07beb029ec211dbb126d47b62969dd3f1
  if [ "$(cat var/ohif/VERSION 2>/dev/null)" != "$ohif_version" ]; then
    echo "Fetching OHIF Viewer $ohif_version (npm: @ohif/app)"
    rm -rf var/ohif && mkdir -p var/ohif
    .venv/bin/python - "$ohif_version" "$ohif_sha256" <<'PY'
import hashlib, io, sys, tarfile, urllib.request
version, sha256 = sys.argv[1], sys.argv[2]
url = f"https://registry.npmjs.org/@ohif/app/-/app-{version}.tgz"
data = urllib.request.urlopen(url, timeout=300).read()
if hashlib.sha256(data).hexdigest() != sha256:
    sys.exit(f"OHIF {version}: checksum mismatch for {url}")
with tarfile.open(fileobj=io.BytesIO(data)) as archive:
    members = [m for m in archive.getmembers() if m.name.startswith("package/dist/")]
    for member in members:
        member.name = member.name.removeprefix("package/")
    archive.extractall("var/ohif", members=members, filter="data")
PY
    echo "$ohif_version" > var/ohif/VERSION
  fi
fi
