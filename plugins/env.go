package plugins

import "strings"

// PassEnv lists the variables of the supervisor's environment that a
// plugin gets (through [Env]); a name ending in "*" is a prefix. A plugin
// inherits nothing else: the supervisor's environment carries its own
// secrets (STOKER_AUTH_TOKEN) and settings, which are no plugin's
// business. What is here is what engines and their libraries read:
//
//   - the process basics: PATH, HOME, USER, LOGNAME, TMPDIR, TZ, LANG,
//     LANGUAGE, LC_*, and LD_LIBRARY_PATH (engine libraries outside the
//     plugins' rpath);
//   - Go runtime tuning for Go plugins: GOMAXPROCS, GOMEMLIMIT, GOGC,
//     GODEBUG, GOTRACEBACK;
//   - device selection and GPU runtimes: CUDA_* (CUDA_VISIBLE_DEVICES,
//     CUDA_CACHE_PATH...), HIP_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES,
//     GPU_DEVICE_ORDINAL, HSA_*, VK_* and MESA_* (Vulkan loaders and
//     drivers), LP_NUM_THREADS (Mesa's CPU Vulkan driver), XDG_CACHE_HOME
//     (shader caches), OMP_* and OPENBLAS_NUM_THREADS (CPU thread pools);
//   - ggml's own settings: GGML_*;
//   - the settings of this repository's engine plugins:
//     STOKER_PLUGIN_LOG_LEVEL (set by the supervisor), STOKER_LLAMA_*
//     (STOKER_LLAMA_THREADS, STOKER_LLAMA_GPU_LAYERS), STOKER_SDCPP_* (THREADS, MEMORY_BUDGET_MB,
//     MAX_SIDE, MAX_PIXEL_STEPS), STOKER_WHISPER_* and STOKER_ONNX_*
//     (LIBRARY, PROVIDER, THREADS, MEMORY_BUDGET_MB: docs/onnx.md), and
//     STOKER_ENGINES_DIR (the engines cache, where the onnx plugin finds
//     the ONNX Runtime library it opens at run time).
//
// A third-party plugin's own settings pass when the operator names them
// (the agent's plugin_env).
var PassEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG", "LANGUAGE", "LC_*", "LD_LIBRARY_PATH",
	"GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "GOTRACEBACK",
	"CUDA_*", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "HSA_*",
	"VK_*", "MESA_*", "LP_NUM_THREADS", "XDG_CACHE_HOME", "OMP_*", "OPENBLAS_NUM_THREADS",
	"GGML_*",
	EnvLogLevel, "STOKER_LLAMA_*", "STOKER_SDCPP_*", "STOKER_WHISPER_*", "STOKER_ONNX_*", "STOKER_ENGINES_DIR",
}

// Env returns the entries of environ ("NAME=value") whose name PassEnv or
// extra allows (exact names, or prefixes ending in "*"), in environ's
// order.
func Env(environ, extra []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if ok && (allowed(name, PassEnv) || allowed(name, extra)) {
			out = append(out, kv)
		}
	}
	return out
}

func allowed(name string, list []string) bool {
	for _, a := range list {
		if p, isPrefix := strings.CutSuffix(a, "*"); isPrefix && strings.HasPrefix(name, p) || a == name {
			return true
		}
	}
	return false
}
