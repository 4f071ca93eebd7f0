/* Unit tests of web file lookup: routes, content types and --web-root path safety. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "webfiles.h"

static void page_routes_map_to_their_files(void **state)
{
    struct web_file root, index, classic, classic_html;
    (void)state;

    assert_int_equal(web_file_find(NULL, "/", &root), 0);
    assert_int_equal(web_file_find(NULL, "/index.html", &index), 0);
    assert_int_equal(web_file_find(NULL, "/classic", &classic), 0);
    assert_int_equal(web_file_find(NULL, "/classic.html", &classic_html), 0);
    assert_ptr_equal(root.data, index.data);
    assert_ptr_equal(classic.data, classic_html.data);
    assert_ptr_not_equal(root.data, classic.data);
    assert_string_equal(root.content_type, "text/html; charset=utf-8");
    assert_string_equal(classic.content_type, "text/html; charset=utf-8");
    assert_int_equal(strlen(root.etag) > 2, 1);
    assert_int_equal(root.etag[0], '"');
    assert_string_not_equal(root.etag, classic.etag);
}

static void content_types_by_extension(void **state)
{
    (void)state;

    assert_string_equal(web_content_type("/a.js"), "text/javascript; charset=utf-8");
    assert_string_equal(web_content_type("/a.mjs"), "text/javascript; charset=utf-8");
    assert_string_equal(web_content_type("/a.css"), "text/css; charset=utf-8");
    assert_string_equal(web_content_type("/a.svg"), "image/svg+xml");
    assert_string_equal(web_content_type("/a"), "application/octet-stream");
    assert_string_equal(web_content_type("/dir.d/file"), "application/octet-stream");
}

static void unsafe_paths_not_found(void **state)
{
    static const char *const paths[] = {"/../etc/passwd", "/a/../../b", "/.hidden", "//x",
                                        "/a\\b",          "relative",   "/a/./b"};
    struct web_file f;
    (void)state;

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        assert_int_equal(web_file_find("/", paths[i], &f), -ENOENT);
}

static void web_root_files_served(void **state)
{
    char dir[] = "/tmp/linkspeed-webroot-XXXXXX";
    char path[128];
    char index_path[128];
    struct web_file f;
    FILE *fp;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/classic.html", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("<p>custom</p>", fp);
    fclose(fp);
    snprintf(index_path, sizeof(index_path), "%s/index.html", dir);
    fp = fopen(index_path, "w");
    assert_non_null(fp);
    fputs("<p>main</p>", fp);
    fclose(fp);

    assert_int_equal(web_file_find(dir, "/classic", &f), 0);
    assert_int_equal(f.size, 13);
    assert_memory_equal(f.data, "<p>custom</p>", 13);
    assert_non_null(f.owned);
    free(f.owned);
    assert_int_equal(web_file_find(dir, "/", &f), 0);
    assert_int_equal(f.size, 11);
    assert_memory_equal(f.data, "<p>main</p>", 11);
    free(f.owned);
    assert_int_equal(web_file_find(dir, "/missing.js", &f), -ENOENT);
    assert_int_equal(web_file_find(dir, "/classic.html/x", &f), -ENOENT);

    unlink(index_path);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(page_routes_map_to_their_files),
        cmocka_unit_test(content_types_by_extension),
        cmocka_unit_test(unsafe_paths_not_found),
        cmocka_unit_test(web_root_files_served),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
