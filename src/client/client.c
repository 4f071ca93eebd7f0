/* Helpers shared by the modules of `linkspeed test`. */
#include "client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

int client_fail(struct client_error *err, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vsnprintf(err->message, sizeof(err->message), format, args);
    va_end(args);
    return -EIO;
}
