/* Helpers shared by the modules of `linkspeed test`. */
#include "client.h"

#include "core/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void client_escape_controls(char *text, size_t size)
{
    char escaped[CLIENT_ERROR_MAX];
    const uint8_t *in = (const uint8_t *)text;
    size_t length = strlen(text);
    size_t out = 0;

    if (size > sizeof(escaped))
        size = sizeof(escaped);
    for (size_t i = 0; i < length;) {
        uint32_t code_point;
        size_t sequence = utf8_decode(in + i, length - i, &code_point);
        /* Bytes that are not UTF-8 are escaped one at a time, controls whole. */
        bool escape = sequence == 0 || utf8_is_control(code_point);
        size_t input_bytes = sequence == 0 ? 1 : sequence;
        size_t output_bytes = escape ? 4 * input_bytes : input_bytes;

        /* A text that does not fit ends before a whole character, never inside one. */
        if (out + output_bytes >= size)
            break;
        for (size_t k = 0; k < input_bytes; k++) {
            if (escape)
                snprintf(escaped + out + 4 * k, 5, "\\x%02x", in[i + k]);
            else
                escaped[out + k] = (char)in[i + k];
        }
        out += output_bytes;
        i += input_bytes;
    }
    escaped[out] = '\0';
    memcpy(text, escaped, out + 1);
}

const char *client_direction_name(enum client_direction direction)
{
    return direction == CLIENT_DOWNLOAD ? "download" : "upload";
}

int client_fail(struct client_error *err, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vsnprintf(err->message, sizeof(err->message), format, args);
    va_end(args);
    client_escape_controls(err->message, sizeof(err->message));
    return -EIO;
}
