/* UTF-8 decoding for text that reaches a terminal, a log or a JSON document: server names,
 * error messages, close reasons. */
#ifndef LINKSPEED_UTF8_H
#define LINKSPEED_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the UTF-8 sequence at the start of text into *code_point and returns its length, 1
 * to 4 bytes. Returns 0 when length is 0 or the bytes there are not valid UTF-8 (RFC 3629:
 * no overlong forms, surrogates or code points above U+10FFFF). */
size_t utf8_decode(const uint8_t *text, size_t length, uint32_t *code_point);

/* Returns true for code points that change how a terminal or text around them shows: the C0
 * and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates
 * (U+202A to U+202E, U+2066 to U+2069). */
bool utf8_is_control(uint32_t code_point);

#endif
