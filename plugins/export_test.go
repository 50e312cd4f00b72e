package plugins

import "testing"

// SetAfterVerify makes Launch call f between its checks and the exec, for
// the test's duration.
func SetAfterVerify(t testing.TB, f func(path string)) {
	afterVerify = f
	t.Cleanup(func() { afterVerify = nil })
}
