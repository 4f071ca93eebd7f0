/* Unit tests of client_escape_controls(): text from a server or a URL reaches a terminal, a
 * JSON document and a CSV line, so controls and bytes that are not UTF-8 are escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "client.h"

static void escape_cases(void **state)
{
    static const struct {
        const char *text;
        const char *expected;
    } cases[] = {
        {"plain text", "plain text"},
        {"Z\xc3\xbcrich \xe2\x80\x93 lab", "Z\xc3\xbcrich \xe2\x80\x93 lab"},
        {"\x1b[2Jcleared\r\n", "\\x1b[2Jcleared\\x0d\\x0a"},
        {"del\x7f", "del\\x7f"},
        {"c1 \xc2\x9b"
         "31m",
         "c1 \\xc2\\x9b31m"},
        {"\xe2\x80\xae"
         "txet",
         "\\xe2\\x80\\xaetxet"},
        {"caf\xe9", "caf\\xe9"},
        {"bad \xff\xfe end", "bad \\xff\\xfe end"},
        {"cut \xc3", "cut \\xc3"},
        {"", ""},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[128];

        snprintf(text, sizeof(text), "%s", cases[i].text);
        client_escape_controls(text, sizeof(text));
        assert_string_equal(text, cases[i].expected);
    }
}

/* A text that does not fit ends before the character that does not, never inside it. */
static void escape_cuts_between_characters(void **state)
{
    static const struct {
        size_t size;
        const char *expected;
    } cases[] = {
        {7, "ab\xc3\xa9"
            "cd"},
        {6, "ab\xc3\xa9"
            "c"},
        {5, "ab\xc3\xa9"},
        {4, "ab"},
        {3, "ab"},
        {1, ""},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[16] = "ab\xc3\xa9"
                        "cd";

        client_escape_controls(text, cases[i].size);
        assert_string_equal(text, cases[i].expected);
    }
}

static void escape_cuts_before_an_escape(void **state)
{
    char text[16] = "ab\x1b";
    (void)state;

    /* "ab\x1b" escaped needs 6 bytes and a NUL. */
    client_escape_controls(text, 6);
    assert_string_equal(text, "ab");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escape_cases),
        cmocka_unit_test(escape_cuts_between_characters),
        cmocka_unit_test(escape_cuts_before_an_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
