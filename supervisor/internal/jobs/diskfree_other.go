//go:build !unix

package jobs

// diskFree is unknown off Unix: the spool's size bound still applies.
func diskFree(string) (uint64, bool) { return 0, false }
