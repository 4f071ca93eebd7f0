/* Looks up web UI files in the embedded copy or under --web-root; see webfiles.h. */
#include "webfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Each request reads its file into memory, so larger files under --web-root are rejected. */
#define WEB_ROOT_MAX_FILE_BYTES (8u * 1024 * 1024)

static const struct {
    const char *extension;
    const char *content_type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

const char *web_content_type(const char *path)
{
    const char *dot = strrchr(path, '.');

    if (dot != NULL && strchr(dot, '/') == NULL) {
        for (size_t i = 0; i < sizeof(content_types) / sizeof(content_types[0]); i++) {
            if (strcmp(dot, content_types[i].extension) == 0)
                return content_types[i].content_type;
        }
    }
    return "application/octet-stream";
}

/* Maps page routes to the file that serves them: "/" is the main page, "/classic" the
 * original WebSocket page. */
static const char *route_to_file(const char *url_path)
{
    if (strcmp(url_path, "/") == 0)
        return "/index.html";
    if (strcmp(url_path, "/classic") == 0)
        return "/classic.html";
    return url_path;
}

/* Accepts only plain relative names: no "..", no empty or hidden segments, no backslash. */
static int path_is_safe(const char *path)
{
    if (path[0] != '/' || strchr(path, '\\') != NULL)
        return 0;
    for (const char *segment = path + 1; *segment != '\0';) {
        if (segment[0] == '.' || segment[0] == '/')
            return 0;
        const char *slash = strchr(segment, '/');
        if (slash == NULL)
            break;
        segment = slash + 1;
    }
    return 1;
}

static int read_from_root(const char *root, const char *path, struct web_file *out)
{
    char full[4096];
    struct stat st;
    ssize_t n;
    size_t done = 0;
    int fd, rc;

    if (snprintf(full, sizeof(full), "%s%s", root, path) >= (int)sizeof(full))
        return -ENOENT;
    /* O_NONBLOCK: opening a FIFO placed in the directory must not block the worker. */
    fd = open(full, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR || errno == EACCES ? -ENOENT : -errno;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -ENOENT;
    }
    if ((uint64_t)st.st_size > WEB_ROOT_MAX_FILE_BYTES) {
        close(fd);
        return -EFBIG;
    }

    out->owned = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (out->owned == NULL) {
        close(fd);
        return -ENOMEM;
    }
    while (done < (size_t)st.st_size) {
        n = read(fd, out->owned + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            close(fd);
            free(out->owned);
            out->owned = NULL;
            return rc;
        }
        done += (size_t)n;
    }
    close(fd);

    out->data = out->owned;
    out->size = done;
    snprintf(out->etag, sizeof(out->etag), "\"%lx-%lx-%lx\"", (unsigned long)st.st_ino,
             (unsigned long)st.st_size, (unsigned long)st.st_mtime);
    return 0;
}

int web_file_find(const char *web_root, const char *url_path, struct web_file *out)
{
    const char *path = route_to_file(url_path);

    memset(out, 0, sizeof(*out));
    if (!path_is_safe(path))
        return -ENOENT;
    out->content_type = web_content_type(path);

    if (web_root != NULL)
        return read_from_root(web_root, path, out);

    for (size_t i = 0; i < embedded_file_count; i++) {
        if (strcmp(embedded_files[i].path, path) == 0) {
            out->data = embedded_files[i].data;
            out->size = embedded_files[i].size;
            snprintf(out->etag, sizeof(out->etag), "%s", embedded_files[i].etag);
            return 0;
        }
    }
    return -ENOENT;
}
