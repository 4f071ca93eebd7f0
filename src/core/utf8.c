/* UTF-8 decoding; see utf8.h. */
#include "utf8.h"

size_t utf8_decode(const uint8_t *text, size_t length, uint32_t *code_point)
{
    uint8_t lead;
    size_t extra;
    uint32_t value;
    uint32_t minimum;

    if (length == 0)
        return 0;
    lead = text[0];
    if (lead < 0x80) {
        *code_point = lead;
        return 1;
    }
    if ((lead & 0xe0) == 0xc0) {
        extra = 1;
        value = lead & 0x1f;
        minimum = 0x80;
    } else if ((lead & 0xf0) == 0xe0) {
        extra = 2;
        value = lead & 0x0f;
        minimum = 0x800;
    } else if ((lead & 0xf8) == 0xf0) {
        extra = 3;
        value = lead & 0x07;
        minimum = 0x10000;
    } else {
        return 0;
    }
    if (extra >= length)
        return 0;
    for (size_t i = 1; i <= extra; i++) {
        if ((text[i] & 0xc0) != 0x80)
            return 0;
        value = value << 6 | (text[i] & 0x3f);
    }
    if (value < minimum || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff))
        return 0;
    *code_point = value;
    return extra + 1;
}

bool utf8_is_control(uint32_t code_point)
{
    return code_point < 0x20 || (code_point >= 0x7f && code_point <= 0x9f) ||
           (code_point >= 0x202a && code_point <= 0x202e) ||
           (code_point >= 0x2066 && code_point <= 0x2069);
}
