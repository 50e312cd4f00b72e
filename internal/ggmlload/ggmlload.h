// ggmlload.h: loading ggml's backend modules, for the engine plugins that
// link ggml through cgo (llamacpp-plugin, whisper-plugin). Header only: a
// plugin includes it (#cgo CFLAGS: -I${SRCDIR}/../internal/ggmlload) after
// defining _GNU_SOURCE, and links -ldl.
//
// A ggml built with GGML_BACKEND_DL (the GPU builds of
// scripts/engines/llama-gpu.sh, or a farm's multi-backend build) registers no
// backend, not even the CPU, until its modules are loaded. They sit beside
// libggml-base, wherever the plugin's rpath found it; ggml's own
// ggml_backend_load_all looks only beside the program and in the working
// directory, so that comes second. A build with its backends linked in has
// them registered already and loads nothing.
#ifndef STOKER_GGMLLOAD_H
#define STOKER_GGMLLOAD_H

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ggml.h"
#include "ggml-backend.h"

static void stoker_ggml_load_backends_once(void) {
	if (ggml_backend_reg_count() > 0) return;
	Dl_info info;
	// ggml_version's string lives in libggml-base itself (the address of a
	// function could be the program's own PLT entry).
	if (dladdr((const void *)ggml_version(), &info) && info.dli_fname != NULL) {
		char dir[4096];
		snprintf(dir, sizeof dir, "%s", info.dli_fname);
		char *slash = strrchr(dir, '/');
		if (slash != NULL) {
			*slash = 0;
			ggml_backend_load_all_from_path(dir);
		}
	}
	if (ggml_backend_reg_count() == 0) ggml_backend_load_all();
}

// stoker_ggml_load_backends loads the backends once per process (ggml's
// registry is not safe for concurrent loading).
static void stoker_ggml_load_backends(void) {
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, stoker_ggml_load_backends_once);
}

#endif
