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
	found := false
	for {
		name, next, plain := plainString(obj, i)
		if !plain {
			return "", false
		}
		i = skipSpace(obj, next)
		if i >= len(obj) || obj[i] != ':' {
			return "", false
		}
		i = skipSpace(obj, i+1)
		switch {
		case string(name) == key:
			v, next, plain := plainString(obj, i)
			if found || !plain {
				return "", false
			}
			val, found, i = string(v), true, next
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

// plainString reads the string that starts at obj[i] when it is plain
// (ASCII, no escape, no control character): its contents and the index
// just past it. ok is false for anything else.
func plainString(obj []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(obj) || obj[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(obj); j++ {
		switch c := obj[j]; {
		case c == '"':
			return obj[i+1 : j], j + 1, true
		case c == '\\' || c >= 0x80 || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
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
