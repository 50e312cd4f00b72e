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
		if _, err := s.safeDir(s.rel(filepath.Dir(rp))); err != nil {
			return false, err
		}
		if r, ok := readRecord(rp); ok && r.Size == fi.Size() && r.MtimeNs == fi.ModTime().UnixNano() {
			return strings.EqualFold(r.SHA256, want), nil
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

// maxRecordBytes bounds what is read of a record file; a real one is about
// 120 bytes.
const maxRecordBytes = 4 << 10

// readRecord reads the record at rp; ok is false when there is none, or it
// is a symlink, not a regular file, or not a record.
func readRecord(rp string) (r record, ok bool) {
	f, _, err := openRegular(rp)
	if err != nil {
		return record{}, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecordBytes))
	if err != nil || json.Unmarshal(b, &r) != nil {
		return record{}, false
	}
	return r, true
}

// writeRecord stores r atomically; a failure only costs a later re-hash.
func (s *Store) writeRecord(rp string, r record) {
	b, _ := json.Marshal(r)
	_, err := s.safeDir(s.rel(filepath.Dir(rp)))
	if err == nil {
		err = writeFileAtomic(rp, b)
	}
	if err != nil {
		s.log.Debug("cannot write verification record", "path", rp, "error", err)
	}
}

// writeFileAtomic writes b to p through a temporary file and a rename,
// which replaces a symlink at p rather than writing through it.
func writeFileAtomic(p string, b []byte) error {
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

// rel returns p, a path under the root, relative to the root.
func (s *Store) rel(p string) string {
	return strings.TrimPrefix(p, s.root+string(filepath.Separator))
}

func hashFile(p string) (string, error) {
	f, _, err := openRegular(p)
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
