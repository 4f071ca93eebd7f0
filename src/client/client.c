/* Helpers shared by the modules of `linkspeed test`. */
#include "client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void client_escape_controls(char *text, size_t size)
{
    char escaped[CLIENT_ERROR_MAX];
    size_t out = 0;

    if (size > sizeof(escaped))
        size = sizeof(escaped);
    for (const unsigned char *in = (const unsigned char *)text; *in != '\0'; in++) {
        bool control = *in < 0x20 || *in == 0x7f;
        size_t need = control ? 4 : 1;

        if (out + need >= size)
            break;
        if (control)
            snprintf(escaped + out, 5, "\\x%02x", *in);
        else
            escaped[out] = (char)*in;
        out += need;
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
