// Helpers for binding_sdcpp.go; see sdcpp_cgo.c.
#ifndef STOKER_SDCPP_BINDING_H
#define STOKER_SDCPP_BINDING_H

#include <stdint.h>
#include <stdbool.h>
#include "stable-diffusion.h"

// stoker_install_callbacks routes stable-diffusion.cpp's log and progress
// callbacks (process-wide in the library) to Go.
void stoker_install_callbacks(void);

// stoker_load_image reads an image file as sd-cli does: WebP through
// libwebp, everything else through stb_image, converted to channels (1 or
// 3); when want_w and want_h are positive and differ from the image's size,
// centre-cropped to their aspect ratio and resized with stb's box filter in
// sRGB. Returns malloc'd pixels (free with free) and sets *w, *h; on failure
// returns NULL with a reason in err.
uint8_t * stoker_load_image(const char * path, int want_w, int want_h, int channels,
                            int * w, int * h, char * err, int errlen);

// stoker_encode_webp encodes RGB pixels at quality as sd-cli does
// (WebPEncodeRGB, lossy). Returns the size and sets *out (free with
// stoker_webp_free), or 0 on failure.
size_t stoker_encode_webp(const uint8_t * rgb, int w, int h, float quality, uint8_t ** out);
void stoker_webp_free(uint8_t * p);

// stoker_generate calls generate_image and frees every image but the
// first, which it returns (NULL when none).
sd_image_t * stoker_generate(sd_ctx_t * ctx, const sd_img_gen_params_t * p);

// stoker_free_image frees an image returned by stoker_generate.
void stoker_free_image(sd_image_t * img);

#endif
