//go:build !unix

package plugintest

func processAlive(int) bool { return false }
