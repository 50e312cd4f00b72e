package devstudio

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

const (
	maxPromptBytes = 16 << 20
	maxExtBytes    = 64
)

// uploadAllowedLocked reports whether workerID may upload j's result: the
// job is offered to or running on one of its sessions, or (so that a result
// computed across a disconnect is not lost) the job was released by that
// worker's socket close and is queued, not yet offered to anyone else.
func (s *Server) uploadAllowedLocked(j *job, workerID string) bool {
	if j == nil {
		return false
	}
	if j.holder != nil {
		return j.holder.workerID == workerID && (j.status == JobOffered || j.status == JobRunning)
	}
	return j.status == JobQueued && j.worker == workerID
}

// handleComplete serves POST /graphics/api/workers/{workerId}/jobs/{jobId}/complete
// (§7.1): multipart parts prompt, ext, image. The file part is streamed to
// disk while hashed; it is never held in memory.
func (s *Server) handleComplete(w http.ResponseWriter, r *http.Request) {
	workerID, jobID := r.PathValue("workerId"), r.PathValue("jobId")
	token, ok := bearer(r)
	s.mu.Lock()
	wk := s.workers[workerID]
	if !ok || wk == nil || !sameHash(hashHex(token), wk.tokenHash) {
		s.mu.Unlock()
		writeJSONError(w, http.StatusUnauthorized, "invalid worker credentials")
		return
	}
	j := s.jobs[jobID]
	if !s.uploadAllowedLocked(j, workerID) {
		s.stats.Stray++
		s.mu.Unlock()
		writeJSONError(w, http.StatusConflict, "job is not claimed by this worker")
		return
	}
	j.uploads++
	attempt := j.uploads
	s.mu.Unlock()

	if drop := s.cfg.Hooks.Drop; drop != nil && drop(workerID, PointUploadStart, jobID) {
		s.log.Info("hook: dropping socket at upload start", "worker", workerID, "job", jobID)
		_ = s.DropWorker(workerID) // no open session is fine
	}
	if hook := s.cfg.Hooks.UploadStatus; hook != nil {
		if status := hook(workerID, jobID, attempt); status != 0 {
			_, _ = io.Copy(io.Discard, r.Body)
			writeJSONError(w, status, fmt.Sprintf("hook: upload answered %d", status))
			return
		}
	}

	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadBytes)
	res, err := s.receiveResult(r, jobID)
	if err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSONError(w, status, "upload: "+err.Error())
		return
	}

	s.mu.Lock()
	j = s.jobs[jobID]
	if !s.uploadAllowedLocked(j, workerID) {
		s.stats.Stray++
		s.mu.Unlock()
		os.Remove(res.path)
		writeJSONError(w, http.StatusConflict, "job is not claimed by this worker")
		return
	}
	s.stats.Outcomes++
	s.unholdLocked(j)
	now := time.Now()
	j.status, j.worker, j.errMsg, j.updated, j.reported = JobCompleted, workerID, "", now, now
	j.resultPath, j.resultExt, j.resultSHA, j.resultSize, j.prompt = res.path, res.ext, res.sha, res.size, res.prompt
	s.dispatchLocked() // the HTTP handler nudges the next offer (R6)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("binary result stored", "job", jobID, "worker", workerID, "bytes", res.size)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

type storedResult struct {
	path, ext, sha, prompt string
	size                   int64
}

// receiveResult reads the multipart body part by part, streaming the file
// part to a file in ResultsDir.
func (s *Server) receiveResult(r *http.Request, jobID string) (storedResult, error) {
	var res storedResult
	mr, err := r.MultipartReader()
	if err != nil {
		return res, err
	}
	var tmp string
	defer func() {
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	sawPrompt := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, err
		}
		switch part.FormName() {
		case protocol.PartPrompt:
			b, err := readSmall(part, maxPromptBytes)
			if err != nil {
				return res, fmt.Errorf("prompt part: %w", err)
			}
			res.prompt, sawPrompt = string(b), true
		case protocol.PartExt:
			b, err := readSmall(part, maxExtBytes)
			if err != nil {
				return res, fmt.Errorf("ext part: %w", err)
			}
			res.ext = string(b)
		case protocol.PartFile:
			if tmp != "" {
				return res, errors.New("more than one file part")
			}
			if res.ext == "" { // parts out of the reference order
				res.ext = strings.TrimPrefix(filepath.Ext(part.FileName()), ".")
			}
			if !validExt(res.ext) {
				return res, fmt.Errorf("bad ext %q", res.ext)
			}
			tmp, res.sha, res.size, err = s.streamToFile(part, jobID)
			if err != nil {
				return res, fmt.Errorf("file part: %w", err)
			}
		default:
			// generationMeta… and anything else: accepted and ignored.
			if _, err := io.Copy(io.Discard, part); err != nil {
				return res, err
			}
		}
		part.Close()
	}
	if tmp == "" {
		return res, errors.New("missing file part " + protocol.PartFile)
	}
	if !sawPrompt {
		return res, errors.New("missing prompt part")
	}
	if !validExt(res.ext) {
		return res, fmt.Errorf("bad ext %q", res.ext)
	}
	final := filepath.Join(s.cfg.ResultsDir, fmt.Sprintf("%s-%s.%s", jobID, randomHex(4), res.ext))
	if err := os.Rename(tmp, final); err != nil {
		return res, err
	}
	tmp, res.path = "", final
	return res, nil
}

func (s *Server) streamToFile(part *multipart.Part, jobID string) (path, sha string, n int64, err error) {
	f, err := os.CreateTemp(s.cfg.ResultsDir, jobID+"-*.part")
	if err != nil {
		return "", "", 0, err
	}
	h := sha256.New()
	n, err = io.Copy(io.MultiWriter(f, h), part)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", "", 0, err
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), n, nil
}

func readSmall(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("over %d bytes", limit)
	}
	return b, nil
}

// validExt accepts short alphanumeric extensions only, so a result file
// name can never escape ResultsDir.
func validExt(ext string) bool {
	if ext == "" || len(ext) > 16 {
		return false
	}
	for _, c := range ext {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// handleResult serves GET /api/jobs/{id}/result with the result's
// Content-Type (Range requests supported).
func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	j := s.jobs[r.PathValue("id")]
	var path, ext string
	if j != nil {
		path, ext = j.resultPath, j.resultExt
	}
	s.mu.Unlock()
	if path == "" {
		writeJSONError(w, http.StatusNotFound, "no binary result")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeJSONError(w, http.StatusNotFound, "result gone")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "stat result")
		return
	}
	w.Header().Set("Content-Type", protocol.ContentTypeForExt(ext))
	http.ServeContent(w, r, j.id+"."+ext, fi.ModTime(), f)
}

// handleDevFile serves GET /dev/files/{name} from FilesDir: plain file
// names only, regular files only, Range supported (so model downloads can
// resume).
func (s *Server) handleDevFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.cfg.FilesDir == "" {
		http.NotFound(w, r)
		return
	}
	if !protocol.IsPlainFileName(name) {
		writeJSONError(w, http.StatusBadRequest, "not a plain file name")
		return
	}
	f, err := os.Open(filepath.Join(s.cfg.FilesDir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, fi.ModTime(), f)
}
