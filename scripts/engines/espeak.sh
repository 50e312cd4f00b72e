#!/usr/bin/env bash
# espeak.sh installs what the Python espeak-tts plugin
# (espeak-tts-plugin) needs, all from Debian: espeak-ng (the
# engine), python3-grpcio, python3-protobuf and python3-cryptography (its
# runtime, for /usr/bin/python3; cryptography makes its AutoMTLS
# certificate), protobuf-compiler and protobuf-compiler-grpc (protoc and
# grpc_python_plugin, which generate its stubs at build time). Nothing is
# built and nothing goes into $STOKER_ENGINES_DIR (no current/ pointer:
# nothing links it through cgo). Idempotent: installed packages are left
# alone.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

engines_apt_install espeak-ng python3-grpcio python3-protobuf python3-cryptography \
	protobuf-compiler protobuf-compiler-grpc
/usr/bin/python3 -c 'import grpc, google.protobuf, cryptography' ||
	engines_die "espeak: /usr/bin/python3 cannot import grpc, protobuf and cryptography"
