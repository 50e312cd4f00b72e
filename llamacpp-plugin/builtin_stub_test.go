//go:build !llamacpp

package main

const llamaBuiltIn = false
