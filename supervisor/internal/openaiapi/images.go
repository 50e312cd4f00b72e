package openaiapi

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/stokerhq/stoker/supervisor/internal/jobhttp"
	"github.com/stokerhq/stoker/supervisor/internal/localjobs"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// MaxStoredImages is how many images made for a "url" answer are kept for
// GET /v1/images/files/{name}; the oldest goes when one more is made.
const MaxStoredImages = 64

// imageRequest is what this node reads of an image generation request.
type imageRequest struct {
	Model          string `json:"model"`
	Prompt         string `json:"prompt"`
	N              *int   `json:"n"`
	Size           string `json:"size"`
	ResponseFormat string `json:"response_format"`
	// Extensions OpenAI's API lacks, which stable-diffusion.cpp takes.
	NegativePrompt string  `json:"negative_prompt"`
	Seed           *uint64 `json:"seed"`
	Steps          *uint32 `json:"steps"`
}

// imageTask maps the request onto the spec's ImageParams.
func (req *imageRequest) imageTask() (protocol.Task, error) {
	if req.N != nil && *req.N != 1 {
		return protocol.Task{}, errors.New("n must be 1: this node makes one image per request")
	}
	p := &protocol.ImageParams{Prompt: req.Prompt, NegativePrompt: req.NegativePrompt, Seed: req.Seed, Steps: req.Steps, Ext: "png"}
	if req.Size != "" && req.Size != "auto" {
		ws, hs, ok := strings.Cut(req.Size, "x")
		w, werr := strconv.ParseUint(ws, 10, 32)
		h, herr := strconv.ParseUint(hs, 10, 32)
		if !ok || werr != nil || herr != nil || w == 0 || h == 0 {
			return protocol.Task{}, fmt.Errorf("size %.32q: want WIDTHxHEIGHT, such as 512x512", req.Size)
		}
		p.Width, p.Height = ptr(uint32(w)), ptr(uint32(h))
	}
	return protocol.Task{Kind: protocol.KindImage, Image: p}, nil
}

func (h *Handlers) generateImage(w http.ResponseWriter, r *http.Request) {
	var req imageRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Model == "" {
		badRequest(w, "model is required")
		return
	}
	format := req.ResponseFormat
	if format == "" {
		format = "url" // OpenAI's default
	}
	if format != "url" && format != "b64_json" {
		badRequest(w, fmt.Sprintf("response_format %.32q: want url or b64_json", format))
		return
	}
	task, err := req.imageTask()
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	res, err := h.jobs.Run(r.Context(), localjobs.Request{Model: req.Model, Task: task})
	if err != nil {
		writeJobError(w, err)
		return
	}
	defer res.Close()
	if res.File == nil {
		writeError(w, http.StatusInternalServerError, "engine_error", "the engine returned no image")
		return
	}
	item := map[string]string{"revised_prompt": req.Prompt}
	if format == "b64_json" {
		b, err := io.ReadAll(res.File)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "engine_error", "reading the image: "+err.Error())
			return
		}
		item["b64_json"] = base64.StdEncoding.EncodeToString(b)
	} else {
		name, err := h.images.save(res.File, res.Ext)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "engine_error", "keeping the image: "+err.Error())
			return
		}
		// r.Host passed the local API's Host check: an IP address,
		// localhost, or an allowed name.
		item["url"] = "http://" + r.Host + "/v1/images/files/" + name
	}
	jobhttp.WriteJSON(w, http.StatusOK, map[string]any{"created": h.now().Unix(), "data": []map[string]string{item}})
}

func (h *Handlers) imageFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f, err := h.images.open(name)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no image %.80q (the last %d are kept)", name, MaxStoredImages))
		return
	}
	defer f.Close()
	hd := w.Header()
	hd.Set("Content-Type", jobhttp.MediaType(filepath.Ext(name)))
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "private, max-age=3600")
	jobhttp.SetWriteDeadline(w, jobhttp.ResultWriteTimeout)
	io.Copy(w, f)
}

// imageStore keeps the last max images made for "url" answers in dir,
// under random names.
type imageStore struct {
	dir string
	max int

	mu sync.Mutex // guards the directory's content
}

// storedName is the shape of a stored image's name: 128 random bits and
// an extension, so nothing else in dir is ever served.
var storedName = regexp.MustCompile(`^[0-9a-f]{32}\.[a-z0-9]{1,8}$`)

func newImageStore(dir string, max int) (*imageStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("openaiapi: %w", err)
	}
	return &imageStore{dir: dir, max: max}, nil
}

// save copies src into the store and drops the oldest past max.
func (s *imageStore) save(src io.Reader, ext string) (string, error) {
	name := randomHex(16) + "." + ext
	if !storedName.MatchString(name) {
		return "", fmt.Errorf("extension %q", ext)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	s.trimLocked()
	return name, nil
}

// trimLocked removes the oldest images past max.
func (s *imageStore) trimLocked() {
	ents, err := os.ReadDir(s.dir)
	if err != nil || len(ents) <= s.max {
		return
	}
	type aged struct {
		name string
		mod  int64
	}
	var all []aged
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && storedName.MatchString(e.Name()) {
			all = append(all, aged{e.Name(), fi.ModTime().UnixNano()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod < all[j].mod })
	for len(all) > s.max {
		os.Remove(filepath.Join(s.dir, all[0].name))
		all = all[1:]
	}
}

// open opens a stored image by name.
func (s *imageStore) open(name string) (*os.File, error) {
	if !storedName.MatchString(name) {
		return nil, os.ErrNotExist
	}
	return os.Open(filepath.Join(s.dir, name))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
