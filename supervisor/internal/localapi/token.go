package localapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// TokenFile is the bearer token's file name in the agent's state dir.
const TokenFile = "local-api-token"

// minTokenLen is the shortest token accepted from a file an operator wrote
// (a generated one is 64 hex digits, 256 bits): 32 characters keep even a
// hand-made token out of reach of guessing over the network.
const minTokenLen = 32

// maxTokenFile bounds what is read of the token file.
const maxTokenFile = 4 << 10

// loadToken returns the bearer token in the file at path, creating the
// file (owner-only, 0600) with a fresh random token when there is none.
// The file must be a regular file, not a symlink, owned by this process's
// user and neither readable nor writable by group or others; its content,
// trimmed, must be at least minTokenLen printable characters without
// spaces.
func loadToken(path string) (string, error) {
	tok, err := createToken(path)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return tok, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return "", fmt.Errorf("localapi: token file %s is a symlink; want a regular file", path)
		}
		return "", fmt.Errorf("localapi: token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("localapi: token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("localapi: token file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("localapi: token file %s has mode %04o; others could read or change it (chmod 600 it)", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("localapi: token file %s belongs to uid %d, not to this user (%d)", path, st.Uid, os.Geteuid())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("localapi: token file: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("localapi: token file %s is over %d bytes", path, maxTokenFile)
	}
	tok = strings.TrimSpace(string(b))
	if len(tok) < minTokenLen {
		return "", fmt.Errorf("localapi: token in %s is shorter than %d characters (delete the file to have a new one made)", path, minTokenLen)
	}
	for _, c := range tok {
		if c <= ' ' || c > '~' {
			return "", fmt.Errorf("localapi: token in %s has a space or a character outside printable ASCII", path)
		}
	}
	return tok, nil
}

// createToken writes a fresh token to a new file at path; an existing
// path (file or link) is left alone and reported as os.ErrExist.
func createToken(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", err
		}
		return "", fmt.Errorf("localapi: creating token file: %w", err)
	}
	tok := randomHex(32)
	_, werr := f.WriteString(tok + "\n")
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return "", fmt.Errorf("localapi: writing token file: %w", werr)
	}
	return tok, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// sameSecret compares a presented credential with the expected one in
// constant time (hashing first, so the length leaks nothing either).
func sameSecret(got, want string) bool {
	if want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
