//go:build tools

// Package tools pins the versions of the developer tools the scripts run
// (buf for proto lint, breaking-change checks and generation). It is a
// module of its own so that buf's dependencies never reach the stoker module
// that plugin authors import.
package tools

import _ "github.com/bufbuild/buf/cmd/buf"
