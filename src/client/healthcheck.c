/* `linkspeed healthcheck [URL]`: GET URL/healthz and check its status field. */
#include "healthcheck.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define HEALTHCHECK_TIMEOUT_MS 5000L
#define HEALTHCHECK_MAX_BODY   4096

struct body {
    char data[HEALTHCHECK_MAX_BODY + 1];
    size_t size;
};

static size_t collect(char *ptr, size_t size, size_t count, void *user)
{
    struct body *b = user;
    size_t n = size * count;

    if (n > HEALTHCHECK_MAX_BODY - b->size)
        return 0; /* a health response is small, so a larger one is rejected */
    memcpy(b->data + b->size, ptr, n);
    b->size += n;
    b->data[b->size] = '\0';
    return n;
}

static int check(const char *url)
{
    static struct body body;
    char error[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc;
    CURL *curl = curl_easy_init();

    if (curl == NULL) {
        fprintf(stderr, "linkspeed healthcheck: cannot initialise libcurl\n");
        return 1;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, HEALTHCHECK_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);

    if (rc != CURLE_OK) {
        fprintf(stderr, "linkspeed healthcheck: %s: %s\n", url,
                error[0] ? error : curl_easy_strerror(rc));
        return 1;
    }
    if (status != 200) {
        fprintf(stderr, "linkspeed healthcheck: %s returned HTTP %ld\n", url, status);
        return 1;
    }

    json_t *root = json_loads(body.data, 0, NULL);
    const char *state = json_string_value(json_object_get(root, "status"));
    int healthy = state != NULL && strcmp(state, "ok") == 0;
    if (!healthy)
        fprintf(stderr, "linkspeed healthcheck: %s returned status \"%s\"\n", url,
                state ? state : "(missing)");
    json_decref(root);
    return healthy ? 0 : 1;
}

int healthcheck_main(int argc, char **argv)
{
    char url[2048];
    const char *base = "http://127.0.0.1:8080";
    size_t len;

    if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: linkspeed healthcheck [URL]   (default %s)\n"
               "Exits 0 when URL/healthz returns 200 with {\"status\":\"ok\"}, 1 otherwise.\n",
               base);
        return 0;
    }
    if (argc == 1 && argv[0][0] == '-') {
        fprintf(stderr,
                "linkspeed healthcheck: unknown flag %s\nusage: linkspeed healthcheck [URL]   "
                "(default %s)\n",
                argv[0], base);
        return 2;
    }
    if (argc > 1) {
        fprintf(stderr,
                "linkspeed healthcheck: unexpected argument \"%s\": give at most one URL\n"
                "usage: linkspeed healthcheck [URL]   (default %s)\n",
                argv[1], base);
        return 2;
    }
    if (argc == 1)
        base = argv[0];
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) {
        fprintf(stderr, "linkspeed healthcheck: invalid URL \"%s\": expected http:// or https://\n",
                base);
        return 2;
    }
    len = strlen(base);
    while (len > 0 && base[len - 1] == '/')
        len--;
    if (snprintf(url, sizeof(url), "%.*s/healthz", (int)len, base) >= (int)sizeof(url)) {
        fprintf(stderr, "linkspeed healthcheck: URL too long\n");
        return 2;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = check(url);
    curl_global_cleanup();
    return rc;
}
