//go:build !cgo

package faults

import (
	"os"
	"syscall"
)

// Without cgo the C faults are approximated by signals to the process.

func cSegv(bool) {
	_ = syscall.Kill(os.Getpid(), syscall.SIGSEGV)
	select {}
}

func cAbort() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGABRT)
	select {}
}
