//go:build !linux && !darwin

package models

// freeBytes cannot tell on this OS; the preflight is skipped.
func freeBytes(dir string) (uint64, bool, error) { return 0, false, nil }
