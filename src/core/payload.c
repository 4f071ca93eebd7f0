/* Random payload in fragments with header room; see payload.h. */
#include "payload.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

static int fill_random(uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int payload_create(struct payload *p, uint64_t size_bytes, size_t fragment_bytes,
                   size_t headroom_bytes)
{
    size_t stride;
    int rc;

    memset(p, 0, sizeof(*p));
    if (size_bytes == 0 || fragment_bytes == 0)
        return -EINVAL;

    p->size_bytes = size_bytes;
    p->fragment_bytes = fragment_bytes;
    p->headroom_bytes = headroom_bytes;
    p->fragment_count = (size_t)((size_bytes + fragment_bytes - 1) / fragment_bytes);
    stride = headroom_bytes + fragment_bytes;
    p->memory_size = stride * p->fragment_count;

    p->memory =
        mmap(NULL, p->memory_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p->memory == MAP_FAILED) {
        rc = -errno;
        p->memory = NULL;
        return rc;
    }

    for (size_t i = 0; i < p->fragment_count; i++) {
        size_t len;
        uint8_t *fragment = payload_fragment(p, i, &len);
        rc = fill_random(fragment, len);
        if (rc != 0) {
            payload_destroy(p);
            return rc;
        }
    }
    return 0;
}

uint8_t *payload_fragment(const struct payload *p, size_t index, size_t *len)
{
    uint64_t start = (uint64_t)index * p->fragment_bytes;
    uint64_t rest = p->size_bytes - start;

    *len = rest < p->fragment_bytes ? (size_t)rest : p->fragment_bytes;
    return p->memory + index * (p->headroom_bytes + p->fragment_bytes) + p->headroom_bytes;
}

size_t payload_stream_fragments(const struct payload *p)
{
    size_t count = PAYLOAD_STREAM_BYTES / p->fragment_bytes;

    if (count == 0)
        return 1;
    return count < p->fragment_count ? count : p->fragment_count;
}

void payload_destroy(struct payload *p)
{
    if (p->memory != NULL)
        munmap(p->memory, p->memory_size);
    memset(p, 0, sizeof(*p));
}
