//go:build whispercpp

#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include "binding_whisper.h"
#include "ggml-backend.h"
#include "ggmlload.h"

// Implemented in Go (binding_whisper.go).
extern void stokerWhisperProgress(uintptr_t handle, int progress);

void stoker_job_abort(stoker_job * job) {
	__atomic_store_n(&job->abort, 1, __ATOMIC_RELAXED);
}

static bool stoker_abort_cb(void * ud) {
	return __atomic_load_n(&((stoker_job *) ud)->abort, __ATOMIC_RELAXED) != 0;
}

static bool stoker_encoder_begin_cb(struct whisper_context * ctx, struct whisper_state * st, void * ud) {
	(void) ctx; (void) st;
	return !stoker_abort_cb(ud);
}

static void stoker_progress_cb(struct whisper_context * ctx, struct whisper_state * st, int progress, void * ud) {
	(void) ctx; (void) st;
	stokerWhisperProgress(((stoker_job *) ud)->handle, progress);
}

void stoker_set_callbacks(struct whisper_full_params * p, stoker_job * job) {
	p->abort_callback = stoker_abort_cb;
	p->abort_callback_user_data = job;
	p->encoder_begin_callback = stoker_encoder_begin_cb;
	p->encoder_begin_callback_user_data = job;
	p->progress_callback = stoker_progress_cb;
	p->progress_callback_user_data = job;
}

// The first error line logged on this thread since stoker_init cleared it,
// so that a failed load can say why (whisper_init returns only NULL). Thread-local: whisper.cpp logs load
// errors on the loading thread, and stoker_init reads it on the same one.
static __thread char stoker_last_error[512];
static __thread int stoker_last_level;

// stoker_log keeps whisper.cpp and ggml quiet on stderr (the supervisor
// folds the plugin's stderr into its log): warnings and errors only.
static void stoker_log(enum ggml_log_level level, const char * text, void * ud) {
	(void) ud;
	if (level == GGML_LOG_LEVEL_CONT) {
		level = stoker_last_level;
	}
	stoker_last_level = level;
	if (level == GGML_LOG_LEVEL_ERROR && stoker_last_error[0] == 0) { // the first is the cause
		snprintf(stoker_last_error, sizeof stoker_last_error, "%s", text);
		size_t n = strlen(stoker_last_error);
		while (n > 0 && (stoker_last_error[n-1] == '\n' || stoker_last_error[n-1] == ' ')) {
			stoker_last_error[--n] = 0;
		}
	}
	if (level >= GGML_LOG_LEVEL_WARN) {
		fputs(text, stderr);
	}
}

void stoker_install_log(void) {
	whisper_log_set(stoker_log, NULL);
	ggml_log_set(stoker_log, NULL);
}

// stoker_init loads a model with whisper-cli's context parameters (GPU when
// one is built in, flash attention on).
struct whisper_context * stoker_init(const char * path, char * err, int errlen) {
	stoker_ggml_load_backends();
	stoker_last_error[0] = 0;
	struct whisper_context_params cp = whisper_context_default_params();
	cp.use_gpu = true;
	cp.flash_attn = true;
	struct whisper_context * ctx = whisper_init_from_file_with_params_no_state(path, cp);
	if (ctx == NULL) {
		snprintf(err, errlen, "%s", stoker_last_error[0] ? stoker_last_error : "whisper_init failed");
	}
	return ctx;
}

void stoker_device_info(stoker_device * d) {
	stoker_ggml_load_backends();
	memset(d, 0, sizeof *d);
	snprintf(d->backend, sizeof d->backend, "cpu");
	for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
		ggml_backend_dev_t dev = ggml_backend_dev_get(i);
		enum ggml_backend_dev_type t = ggml_backend_dev_type(dev);
		if (t == GGML_BACKEND_DEVICE_TYPE_GPU || (!d->gpu && t == GGML_BACKEND_DEVICE_TYPE_CPU)) {
			snprintf(d->name, sizeof d->name, "%s", ggml_backend_dev_description(dev));
			ggml_backend_dev_memory(dev, &d->free, &d->total);
			if (t == GGML_BACKEND_DEVICE_TYPE_GPU) {
				d->gpu = 1;
				ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
				snprintf(d->backend, sizeof d->backend, "%s", reg ? ggml_backend_reg_name(reg) : "gpu");
				break;
			}
		}
	}
}
