package models

import (
	"strings"
	"unicode/utf8"
)

// maxNameLen bounds file names and sanitised model ids, in bytes; most file
// systems allow 255 and the store appends ".part" and ".lock".
const maxNameLen = 200

// SanitizeModelID returns the cache directory name for a studio model id
// (spec §6.6): every byte outside [A-Za-z0-9._-] becomes '_', and a leading
// '.' becomes '_'. It refuses an empty or over-long id.
func SanitizeModelID(model string) (string, error) {
	if model == "" {
		return "", refusedf("empty model id")
	}
	if len(model) > maxNameLen {
		return "", refusedf("model id longer than %d bytes", maxNameLen)
	}
	b := []byte(model)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if b[0] == '.' {
		b[0] = '_'
	}
	return string(b), nil
}

// CheckFilename reports whether name is a plain file name the store may
// create: not empty, at most 200 bytes of valid UTF-8, no path separator,
// not "." or "..", no NUL or control character, none of the characters
// Windows forbids (<>:"|?*), no leading dot (hidden and reserved), no
// trailing dot or space, not ending in ".part" (reserved for downloads), and
// not a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, with or
// without an extension). A refused name yields an error matching ErrRefused.
func CheckFilename(name string) error {
	switch {
	case name == "":
		return refusedf("empty file name")
	case len(name) > maxNameLen:
		return refusedf("file name longer than %d bytes", maxNameLen)
	case !utf8.ValidString(name):
		return refusedf("file name %q is not valid UTF-8", name)
	case name == "." || name == "..":
		return refusedf("file name %q is a directory reference", name)
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			return refusedf("file name %q contains a path separator", name)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return refusedf("file name %q contains a control character", name)
		case strings.ContainsRune(`<>:"|?*`, r):
			return refusedf("file name %q contains %q", name, r)
		}
	}
	switch {
	case name[0] == '.':
		return refusedf("file name %q starts with a dot", name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return refusedf("file name %q ends with a dot or a space", name)
	case strings.HasSuffix(strings.ToLower(name), partSuffix):
		return refusedf("file name %q ends with the reserved %s", name, partSuffix)
	case isDeviceName(name):
		return refusedf("file name %q is a device name", name)
	}
	return nil
}

// isDeviceName reports whether name, less any extension, is a reserved
// Windows device name. Checked on every OS, so a cache directory can be
// copied to any machine.
func isDeviceName(name string) bool {
	base, _, _ := strings.Cut(name, ".")
	base = strings.ToUpper(strings.TrimRight(base, " "))
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) {
		c := base[3]
		return c >= '0' && c <= '9'
	}
	return false
}
