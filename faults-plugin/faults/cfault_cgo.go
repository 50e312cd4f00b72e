//go:build cgo

package faults

/*
#include <signal.h>
#include <stdlib.h>

static void faults_segv(int raw) {
	if (raw) {
		signal(SIGSEGV, SIG_DFL);
	}
	volatile int *p = (volatile int *)0;
	*p = 42;
}

static void faults_abort(void) { abort(); }
*/
import "C"

// cSegv writes through a null pointer in C. With raw, SIGSEGV is first
// reset to its default action, so the kernel kills the process by the
// signal instead of the Go runtime reporting it.
func cSegv(raw bool) {
	r := C.int(0)
	if raw {
		r = 1
	}
	C.faults_segv(r)
}

// cAbort calls C abort().
func cAbort() { C.faults_abort() }
