// Package releasetest tests the release tarball scripts/release.sh builds
// and the systemd units it carries (rated by systemd-analyze security),
// as an operator installs it (docs/operations.md, "Install"): unpacked into
// a fresh directory, checked against its SHA256SUMS, its binaries and
// libraries finding each other by relative RUNPATHs only, and a tiny-llama
// job served from it by a dev studio and an agent run as an unprivileged
// user (a system user the test creates with useradd when it runs as root),
// with no engines cache, LD_LIBRARY_PATH or STOKER_ENGINES_DIR in their
// environment. The package has no code besides its test.
package releasetest
