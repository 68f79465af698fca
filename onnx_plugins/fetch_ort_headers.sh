#!/usr/bin/env bash
# Fetches ONNX Runtime's C/C++ headers (the pip wheel has none) from Debian trixie's
# libonnxruntime-dev into $1/onnxruntime, using a private apt state: nothing on the system changes.
# Headers of 1.21 build a library that the newer runtimes (1.32) load: the C API is versioned.
set -euo pipefail
dest="$(realpath -m "$1")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etc" "$work/state/lists/partial" "$work/cache/archives/partial"
cat > "$work/etc/trixie.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
opts=(-o "Dir::State=$work/state" -o "Dir::Cache=$work/cache" -o "Dir::Etc::SourceList=/dev/null"
      -o "Dir::Etc::SourceParts=$work/etc" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${opts[@]}" update -qq
(cd "$work" && apt-get "${opts[@]}" download libonnxruntime-dev >/dev/null)
mkdir -p "$dest"
dpkg -x "$work"/libonnxruntime-dev_*.deb "$work/x"
rm -rf "$dest/onnxruntime"
cp -r "$work/x/usr/include/onnxruntime" "$dest/onnxruntime"
echo "ONNX Runtime headers in $dest/onnxruntime"
