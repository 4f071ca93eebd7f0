/* The web UI's files: the copy embedded at build time, or a --web-root directory. */
#ifndef LINKSPEED_WEBFILES_H
#define LINKSPEED_WEBFILES_H

#include <stddef.h>
#include <stdint.h>

/* One file of the embedded copy; the table is generated from web/ by tools/embed.c. */
struct embedded_file {
    const char *path; /* URL path, "/classic.js" */
    const uint8_t *data;
    size_t size;
    const char *etag; /* quoted strong validator computed from the content */
};

extern const struct embedded_file embedded_files[];
extern const size_t embedded_file_count;

struct web_file {
    const uint8_t *data;
    size_t size;
    char etag[48];
    const char *content_type;
    uint8_t *owned; /* non-NULL when read from --web-root; free() it */
};

/* Finds the file for a URL path ("/" maps to index.html, "/classic" to classic.html). Returns 0,
 * -ENOENT when there is none, or another negative errno when reading --web-root failed. */
int web_file_find(const char *web_root, const char *url_path, struct web_file *out);

/* Returns the Content-Type for a file name by its extension. */
const char *web_content_type(const char *path);

#endif
