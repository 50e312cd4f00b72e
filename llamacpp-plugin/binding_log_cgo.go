//go:build llamacpp

package main

// This file holds the cgo export; a file with //export may declare but not
// define C functions in its preamble, so the helpers live in binding_cgo.go.

// #include <stdlib.h>
import "C"

//export goLlamaLog
func goLlamaLog(level C.int, text *C.char) {
	llamaLog.line(int(level), C.GoString(text))
}
