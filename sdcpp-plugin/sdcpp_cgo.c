//go:build sdcpp

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include "binding_sdcpp.h"

// Implemented in Go (binding_export_cgo.go).
extern void stokerSDLog(int level, char * text);
extern void stokerSDProgress(int step, int steps, float seconds);

static void stoker_log_cb(enum sd_log_level_t level, const char * text, void * data) {
	(void) data;
	stokerSDLog((int) level, (char *) text);
}

static void stoker_progress_cb(int step, int steps, float time, void * data) {
	(void) data;
	stokerSDProgress(step, steps, time);
}

void stoker_install_callbacks(void) {
	sd_set_log_callback(stoker_log_cb, NULL);
	sd_set_progress_callback(stoker_progress_cb, NULL);
}

static int stoker_is_webp(const uint8_t * b, size_t n) {
	return n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0;
}

// stoker_read_file reads a whole file; NULL on failure.
static uint8_t * stoker_read_file(const char * path, size_t * size) {
	FILE * f = fopen(path, "rb");
	if (f == NULL) {
		return NULL;
	}
	uint8_t * buf = NULL;
	if (fseek(f, 0, SEEK_END) == 0) {
		long n = ftell(f);
		if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
			buf = malloc(n > 0 ? (size_t) n : 1);
			if (buf != NULL && fread(buf, 1, (size_t) n, f) != (size_t) n) {
				free(buf);
				buf = NULL;
			}
			*size = (size_t) n;
		}
	}
	fclose(f);
	return buf;
}

// stoker_decode_webp decodes WebP to channels (1: the reference's integer
// luma of RGB, 3: RGB).
static uint8_t * stoker_decode_webp(const uint8_t * b, size_t n, int channels, int * w, int * h) {
	WebPBitstreamFeatures ft;
	if (WebPGetFeatures(b, n, &ft) != VP8_STATUS_OK) {
		return NULL;
	}
	int dw = 0, dh = 0;
	int src_c = ft.has_alpha ? 4 : 3;
	uint8_t * dec = (channels == 1 && ft.has_alpha) ? WebPDecodeRGBA(b, n, &dw, &dh) : WebPDecodeRGB(b, n, &dw, &dh);
	if (dec == NULL) {
		return NULL;
	}
	if (channels == 3) {
		src_c = 3;
	}
	size_t px = (size_t) dw * (size_t) dh;
	uint8_t * out = malloc(px * (size_t) channels);
	if (out != NULL) {
		if (channels == 1) {
			for (size_t i = 0; i < px; i++) {
				const uint8_t * s = dec + i * (size_t) src_c;
				out[i] = (uint8_t) ((77 * s[0] + 150 * s[1] + 29 * s[2] + 128) >> 8);
			}
		} else {
			memcpy(out, dec, px * 3);
		}
	}
	WebPFree(dec);
	*w = dw;
	*h = dh;
	return out;
}

uint8_t * stoker_load_image(const char * path, int want_w, int want_h, int channels,
                            int * w, int * h, char * err, int errlen) {
	size_t n = 0;
	uint8_t * file = stoker_read_file(path, &n);
	if (file == NULL) {
		snprintf(err, errlen, "cannot read the file");
		return NULL;
	}
	uint8_t * px = NULL;
	int iw = 0, ih = 0, c = 0;
	if (stoker_is_webp(file, n)) {
		px = stoker_decode_webp(file, n, channels, &iw, &ih);
		if (px == NULL) {
			snprintf(err, errlen, "not a decodable WebP image");
		}
	} else if (n > 0x7fffffff) {
		snprintf(err, errlen, "file too large for an image");
	} else {
		px = stbi_load_from_memory(file, (int) n, &iw, &ih, &c, channels);
		if (px == NULL) {
			snprintf(err, errlen, "not a decodable image: %s", stbi_failure_reason());
		}
	}
	free(file);
	if (px == NULL) {
		return NULL;
	}
	if (iw <= 0 || ih <= 0) {
		free(px);
		snprintf(err, errlen, "image has no pixels");
		return NULL;
	}
	if (want_w > 0 && want_h > 0 && (iw != want_w || ih != want_h)) {
		// Centre-crop to the wanted aspect ratio, then resize: the
		// reference's arithmetic, so its inputs and ours are the same
		// pixels.
		float dst_aspect = (float) want_w / (float) want_h;
		float src_aspect = (float) iw / (float) ih;
		int cx = 0, cy = 0, cw = iw, ch = ih;
		if (src_aspect > dst_aspect) {
			cw = (int) (ih * dst_aspect);
			cx = (iw - cw) / 2;
		} else if (src_aspect < dst_aspect) {
			ch = (int) (iw / dst_aspect);
			cy = (ih - ch) / 2;
		}
		if (cx != 0 || cy != 0) {
			uint8_t * crop = malloc((size_t) cw * (size_t) ch * (size_t) channels);
			if (crop == NULL) {
				free(px);
				snprintf(err, errlen, "out of memory cropping the image");
				return NULL;
			}
			for (int row = 0; row < ch; row++) {
				memcpy(crop + (size_t) row * cw * channels,
				       px + ((size_t) (cy + row) * iw + cx) * channels,
				       (size_t) cw * channels);
			}
			free(px);
			px = crop;
			iw = cw;
			ih = ch;
		}
		uint8_t * out = malloc((size_t) want_w * (size_t) want_h * (size_t) channels);
		if (out == NULL) {
			free(px);
			snprintf(err, errlen, "out of memory resizing the image");
			return NULL;
		}
		if (!stbir_resize(px, iw, ih, 0, out, want_w, want_h, 0, STBIR_TYPE_UINT8, channels,
		                  STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP,
		                  STBIR_FILTER_BOX, STBIR_FILTER_BOX, STBIR_COLORSPACE_SRGB, NULL)) {
			free(px);
			free(out);
			snprintf(err, errlen, "resizing the image failed");
			return NULL;
		}
		free(px);
		px = out;
		iw = want_w;
		ih = want_h;
	}
	*w = iw;
	*h = ih;
	return px;
}

size_t stoker_encode_webp(const uint8_t * rgb, int w, int h, float quality, uint8_t ** out) {
	return WebPEncodeRGB(rgb, w, h, w * 3, quality, out);
}

void stoker_webp_free(uint8_t * p) {
	WebPFree(p);
}

sd_image_t * stoker_generate(sd_ctx_t * ctx, const sd_img_gen_params_t * p) {
	sd_image_t * images = NULL;
	int n = 0;
	if (!generate_image(ctx, p, &images, &n) || images == NULL || n <= 0) {
		if (images != NULL) {
			for (int i = 0; i < n; i++) {
				free(images[i].data);
			}
			free(images);
		}
		return NULL;
	}
	for (int i = 1; i < n; i++) {
		free(images[i].data);
	}
	sd_image_t * first = malloc(sizeof *first);
	if (first == NULL) {
		free(images[0].data);
		free(images);
		return NULL;
	}
	*first = images[0];
	free(images);
	return first;
}

void stoker_free_image(sd_image_t * img) {
	if (img != NULL) {
		free(img->data);
		free(img);
	}
}
