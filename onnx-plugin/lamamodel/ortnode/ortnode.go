// Package ortnode runs ONNX models through ONNX Runtime's own Node API,
// the onnxruntime-node package from the npm registry (the package whose
// shared library scripts/engines/onnx.sh installs for the onnx plugin), so
// that tests can compare the plugin's output with the runtime's reference
// binding and time the runtime called directly. It is for tests and
// benchmarks; nothing in a worker uses it.
//
// The package is installed on first use, with npm's own client, into
// $STOKER_ENGINES_DIR/onnxruntime-node-<Version>/node_modules (install
// scripts off: the CPU library is in the package itself; its install
// script would fetch CUDA libraries from elsewhere). Node itself (v16 or
// later) must be on PATH.
package ortnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Version is the onnxruntime-node release used, the one onnx.sh installs
// the library of.
const Version = "1.30.0"

// Prefix returns where the package is (or will be) installed.
func Prefix() string {
	dir := os.Getenv("STOKER_ENGINES_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "stoker", "engines")
	}
	return filepath.Join(dir, "onnxruntime-node-"+Version)
}

// Ensure installs onnxruntime-node@Version under Prefix unless it is
// there, and returns its node_modules directory. Concurrent callers (test
// binaries of several packages) take turns through a lock file.
func Ensure(ctx context.Context) (string, error) {
	prefix := Prefix()
	modules := filepath.Join(prefix, "node_modules")
	stamp := filepath.Join(prefix, ".stoker-complete")
	if _, err := os.Stat(stamp); err == nil {
		return modules, nil
	}
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return "", fmt.Errorf("ortnode: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(prefix, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("ortnode: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("ortnode: lock: %w", err)
	}
	if _, err := os.Stat(stamp); err == nil {
		return modules, nil
	}
	cmd := exec.CommandContext(ctx, "npm", "install", "--ignore-scripts", "--no-audit", "--no-fund",
		"--prefix", prefix, "onnxruntime-node@"+Version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ortnode: npm install onnxruntime-node@%s: %v\n%s", Version, err, out)
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		return "", fmt.Errorf("ortnode: %w", err)
	}
	return modules, nil
}

// script is ort-run.js, beside this file.
func script() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("ortnode: cannot locate ort-run.js")
	}
	return filepath.Join(filepath.Dir(file), "ort-run.js"), nil
}

// Result is one run's output.
type Result struct {
	Output []float32 // the model's first output, [1,3,H,W]
	Info   string    // the script's line naming inputs, outputs and dims
	// RunMin and RunMean are the times of session.run alone over the
	// timed runs (zero when none were asked for).
	RunMin, RunMean time.Duration
}

// Run runs model on image [1,3,h,w] and mask [1,1,h,w] once, then runs
// more times timed, in a fresh Node process.
func Run(ctx context.Context, model string, h, w int, image, mask []float32, runs int) (Result, error) {
	if len(image) != 3*h*w || len(mask) != h*w {
		return Result{}, fmt.Errorf("ortnode: image %d and mask %d values for %d×%d", len(image), len(mask), h, w)
	}
	modules, err := Ensure(ctx)
	if err != nil {
		return Result{}, err
	}
	js, err := script()
	if err != nil {
		return Result{}, err
	}
	dir, err := os.MkdirTemp("", "ortnode-*")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	imgPath, maskPath, outPath := filepath.Join(dir, "image.f32"), filepath.Join(dir, "mask.f32"), filepath.Join(dir, "out.f32")
	if err := os.WriteFile(imgPath, EncodeF32(image), 0o644); err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(maskPath, EncodeF32(mask), 0o644); err != nil {
		return Result{}, err
	}
	cmd := exec.CommandContext(ctx, "node", js, model, strconv.Itoa(h), strconv.Itoa(w), imgPath, maskPath, outPath, strconv.Itoa(runs))
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("ortnode: node ort-run.js: %v\n%s", err, stderr.Bytes())
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		return Result{}, err
	}
	res := Result{Output: DecodeF32(raw)}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "run_ms" {
			lo, err1 := strconv.ParseFloat(f[1], 64)
			mean, err2 := strconv.ParseFloat(f[2], 64)
			if err1 != nil || err2 != nil {
				return Result{}, fmt.Errorf("ortnode: bad line %q", line)
			}
			res.RunMin = time.Duration(lo * float64(time.Millisecond))
			res.RunMean = time.Duration(mean * float64(time.Millisecond))
		} else if res.Info == "" {
			res.Info = line
		}
	}
	if runs > 0 && res.RunMean == 0 {
		return Result{}, fmt.Errorf("ortnode: no timing in %q", stdout.String())
	}
	return res, nil
}

// EncodeF32 returns vs as little-endian float32 bytes.
func EncodeF32(vs []float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// DecodeF32 reads little-endian float32 bytes.
func DecodeF32(b []byte) []float32 {
	vs := make([]float32, len(b)/4)
	for i := range vs {
		vs[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return vs
}
