package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// record remembers that a file, as it was at a size and modification time,
// hashed to SHA256. It saves hashing gigabytes on every use.
type record struct {
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtimeNs"`
}

// recordPath returns where the record for the cached file p is kept.
func (s *Store) recordPath(p string) (string, bool) {
	rel, err := filepath.Rel(s.root, p)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", false
	}
	if filepath.Dir(rel) == "." {
		// A legacy flat file; '=' never occurs in a sanitised model id.
		rel = filepath.Join("=flat", rel)
	}
	return filepath.Join(s.root, metaDir, "verified", rel+".json"), true
}

// sumMatches reports whether the file p (whose stat is fi) has the sha256
// want, hashing it only when no record covers its current state.
func (s *Store) sumMatches(p string, fi os.FileInfo, want string) (bool, error) {
	rp, ok := s.recordPath(p)
	if ok {
		if b, err := os.ReadFile(rp); err == nil {
			var r record
			if json.Unmarshal(b, &r) == nil && r.Size == fi.Size() && r.MtimeNs == fi.ModTime().UnixNano() {
				return strings.EqualFold(r.SHA256, want), nil
			}
		}
	}
	s.log.Info("verifying sha256 of a file on disk", "path", p, "bytes", fi.Size())
	got, err := hashFile(p)
	if err != nil {
		return false, err
	}
	if ok {
		s.writeRecord(rp, record{SHA256: got, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()})
	}
	return strings.EqualFold(got, want), nil
}

// writeRecord stores r atomically; a failure only costs a later re-hash.
func (s *Store) writeRecord(rp string, r record) {
	b, _ := json.Marshal(r)
	if err := writeFileAtomic(rp, b); err != nil {
		s.log.Debug("cannot write verification record", "path", rp, "error", err)
	}
}

// writeFileAtomic writes b to p through a temporary file and a rename.
func writeFileAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
	}
	return werr
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, copyBufSize)); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
