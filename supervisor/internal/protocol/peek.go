package protocol

import "bytes"

// peekString reads the string value of key among the top-level members of
// the JSON object obj without decoding it: the frame's `type` and the
// task's `kind` pick the struct that the one real decode fills, and reading
// them with encoding/json first costs a whole extra pass over every frame.
//
// ok is true only when encoding/json would find the same string: the key
// once, spelled exactly, no member name that differs from it only in case
// (encoding/json matches names without regard to case, the last one
// winning), no escape or non-ASCII byte in a member name or in the value.
// Otherwise, and whenever obj is not something it can skip through, ok is
// false and the caller decodes the usual way. peekString does not check
// that obj is valid JSON; the decode that follows does.
func peekString(obj []byte, key string) (val string, ok bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return "", false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return "", false
	}
	found := false
	for {
		// A member name: ASCII, no escapes.
		if i >= len(obj) || obj[i] != '"' {
			return "", false
		}
		start := i + 1
		i = start
		for i < len(obj) && obj[i] != '"' {
			if c := obj[i]; c == '\\' || c >= 0x80 || c < 0x20 {
				return "", false
			}
			i++
		}
		if i >= len(obj) {
			return "", false
		}
		name := obj[start:i]
		i = skipSpace(obj, i+1)
		if i >= len(obj) || obj[i] != ':' {
			return "", false
		}
		i = skipSpace(obj, i+1)
		switch {
		case string(name) == key:
			if found || i >= len(obj) || obj[i] != '"' {
				return "", false
			}
			vs := i + 1
			i = vs
			for i < len(obj) && obj[i] != '"' {
				if c := obj[i]; c == '\\' || c >= 0x80 || c < 0x20 {
					return "", false
				}
				i++
			}
			if i >= len(obj) {
				return "", false
			}
			val, found = string(obj[vs:i]), true
			i++
		case equalFoldASCII(name, key):
			return "", false
		default:
			if i = skipValue(obj, i); i < 0 {
				return "", false
			}
		}
		i = skipSpace(obj, i)
		if i >= len(obj) {
			return "", false
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return val, found
		default:
			return "", false
		}
	}
}

// skipValue returns the index just past the JSON value that starts at
// obj[i], or -1 when it cannot find its end. Scalars end at the first
// delimiter; containers at their closing bracket, strings inside them
// skipped whole.
func skipValue(obj []byte, i int) int {
	if i >= len(obj) {
		return -1
	}
	switch obj[i] {
	case '"':
		return skipString(obj, i)
	case '{', '[':
		depth := 0
		for i < len(obj) {
			switch obj[i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			case '"':
				if i = skipString(obj, i); i < 0 {
					return -1
				}
				continue
			}
			i++
		}
		return -1
	default:
		start := i
		for i < len(obj) {
			switch obj[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if i == start {
					return -1
				}
				return i
			}
			i++
		}
		return -1
	}
}

// skipString returns the index just past the string that starts at obj[i]:
// past the first quote after it that an odd run of backslashes does not
// escape.
func skipString(obj []byte, i int) int {
	for i++; i < len(obj); i++ {
		q := bytes.IndexByte(obj[i:], '"')
		if q < 0 {
			return -1
		}
		i += q
		n := 0
		for n < i && obj[i-1-n] == '\\' {
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// equalFoldASCII reports whether a and b are equal ignoring ASCII case.
func equalFoldASCII(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
