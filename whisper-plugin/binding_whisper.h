// Helpers for binding_whisper.go; see whisper_cgo.c.
#ifndef STOKER_WHISPER_BINDING_H
#define STOKER_WHISPER_BINDING_H

#include <stdint.h>
#include <stdbool.h>
#include "whisper.h"

// stoker_job is the per-job state whisper.cpp's callbacks see. It lives in
// C memory for the duration of whisper_full. abort is set by Go from another
// goroutine (cancellation) and read by the callbacks with atomic loads.
typedef struct {
	int abort;
	uintptr_t handle; // cgo.Handle of the Go progress function
} stoker_job;

void stoker_job_abort(stoker_job * job);
void stoker_set_callbacks(struct whisper_full_params * p, stoker_job * job);
void stoker_install_log(void);
struct whisper_context * stoker_init(const char * path, char * err, int errlen);

typedef struct {
	int gpu; // 1 when a GPU device was found
	char name[128];
	char backend[32];
	size_t total, free;
} stoker_device;

void stoker_device_info(stoker_device * d);

#endif
