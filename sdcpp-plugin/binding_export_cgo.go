//go:build sdcpp

package main

// This file holds the cgo exports; a file with //export may declare but not
// define C functions in its preamble, so the helpers live in sdcpp_cgo.c.

// #include <stdint.h>
import "C"

//export stokerSDLog
func stokerSDLog(level C.int, text *C.char) {
	engineLog(int(level), C.GoString(text))
}

//export stokerSDProgress
func stokerSDProgress(step, steps C.int, seconds C.float) {
	engineProgress(int(step), int(steps))
}
