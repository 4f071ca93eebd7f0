/* The parent process of `linkspeed serve`: listening sockets, worker supervision, signals.
 *
 * Workers are processes because Debian's libwebsockets 4.1 runs one service thread per
 * context (LWS_MAX_SMP is 1). The parent only opens sockets, forks, restarts workers that
 * die and forwards SIGINT and SIGTERM as SIGTERM; it never touches a connection. */
#include "server.h"
#include "../core/log.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define LISTEN_BACKLOG 4096
/* A worker that dies sooner than this after its start is restarted only after a pause. */
#define CRASH_LOOP_US 1000000u
/* How long the supervisor waits for a stop signal after a worker exited cleanly, before it
 * restarts the worker. */
#define CLEAN_EXIT_WAIT_NS 200000000L

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t child_exited;

static void on_parent_signal(int sig)
{
    if (sig == SIGCHLD)
        child_exited = 1;
    else if (stop_signal == 0)
        stop_signal = sig;
}

/* Opens one listening socket; returns its descriptor or a negative errno. */
static int open_listener(struct listen_addr *la)
{
    int one = 1, fd, rc;

    fd = socket(la->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* [::] takes IPv6 only, so 0.0.0.0 on the same port can be bound beside it. */
    if (la->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&la->addr, la->addr_len) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* Rewrites the address text with the port the kernel chose for port 0. */
static void update_bound_port(int fd, struct listen_addr *la)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char *colon;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    uint16_t port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                            : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    colon = strrchr(la->text, ':');
    if (colon != NULL)
        snprintf(colon + 1, sizeof(la->text) - (size_t)(colon + 1 - la->text), "%u", port);
}

static int open_listeners(struct config *cfg, int *fds)
{
    int count = 0;

    for (int i = 0; i < cfg->listen_count; i++) {
        int fd = open_listener(&cfg->listen[i]);
        if (fd < 0) {
            log_warn("server", "cannot listen on %s: %s", cfg->listen[i].text, strerror(-fd));
            continue;
        }
        update_bound_port(fd, &cfg->listen[i]);
        log_info("server", "listening on %s", cfg->listen[i].text);
        fds[count++] = fd;
    }
    return count;
}

/* Raises the open-file limit so --max-connections sockets fit in one worker. */
static void raise_fd_limit(uint32_t max_connections)
{
    struct rlimit rl;
    rlim_t wanted = (rlim_t)max_connections + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= wanted)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= wanted ? wanted : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < wanted)
        log_warn("server",
                 "open-file limit is %llu, below --max-connections %u plus spare descriptors; "
                 "raise it with ulimit -n",
                 (unsigned long long)rl.rlim_cur, max_connections);
}

static pid_t start_worker(struct worker *template, int index, const sigset_t *old_mask)
{
    limits_worker_alive(template->limits, index, now_us() / 1000u);
    pid_t pid = fork();

    if (pid != 0)
        return pid;

    /* The worker's handlers go in while signals are still blocked, so a SIGTERM that
     * arrived since fork() reaches the worker's handler, not the parent's. */
    worker_install_signals();
    sigprocmask(SIG_SETMASK, old_mask, NULL);

    struct worker w = *template;
    w.index = index;
    _exit(worker_run(&w));
}

static const char *describe_exit(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "ended with wait status %d", status);
    return buf;
}

struct supervisor {
    struct worker template;
    pid_t pids[CONFIG_MAX_WORKERS];
    uint64_t started_us[CONFIG_MAX_WORKERS];
    uint32_t count;
    uint32_t restarts;
};

/* Reaps exited workers; restarts them unless stopping. Returns how many are still running. */
static uint32_t reap_workers(struct supervisor *sv, int restart, const sigset_t *old_mask)
{
    uint32_t running = 0;
    char why[96];
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (uint32_t i = 0; i < sv->count; i++) {
            if (sv->pids[i] != pid)
                continue;
            sv->pids[i] = 0;
            limits_worker_reset(sv->template.limits, (int)i);
            if (restart && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                /* A worker exits cleanly only after a stop signal. A signal to the
                 * whole process group (systemd's default) stops the workers too, and
                 * their exits can be seen before the parent's own signal arrives. */
                const struct timespec grace = {.tv_nsec = CLEAN_EXIT_WAIT_NS};
                ppoll(NULL, 0, &grace, old_mask);
                restart = !stop_signal;
            }
            if (!restart) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    log_warn("server", "worker %u (pid %d) %s while stopping", i, (int)pid,
                             describe_exit(status, why, sizeof(why)));
                break;
            }
            log_error("server", "worker %u (pid %d) %s; restarting it", i, (int)pid,
                      describe_exit(status, why, sizeof(why)));
            if (now_us() - sv->started_us[i] < CRASH_LOOP_US)
                usleep(CRASH_LOOP_US);
            sv->started_us[i] = now_us();
            sv->pids[i] = start_worker(&sv->template, (int)i, old_mask);
            sv->restarts++;
            if (sv->pids[i] < 0) {
                log_error("server", "cannot restart worker %u: %s", i, strerror(errno));
                sv->pids[i] = 0;
            }
        }
    }
    for (uint32_t i = 0; i < sv->count; i++)
        running += sv->pids[i] > 0;
    return running;
}

/* Kills workers whose event loop stopped reporting; the reaper then restarts them. */
static void kill_stalled_workers(struct supervisor *sv)
{
    uint64_t now_ms = now_us() / 1000u;

    for (uint32_t i = 0; i < sv->count; i++) {
        uint64_t last_ms = limits_worker_last_alive_ms(sv->template.limits, (int)i);
        if (sv->pids[i] <= 0 || now_ms - last_ms < WORKER_STALL_MS)
            continue;
        log_error("server", "worker %u (pid %d) has not run its event loop for %llu ms; killing it",
                  i, (int)sv->pids[i], (unsigned long long)(now_ms - last_ms));
        kill(sv->pids[i], SIGKILL);
        limits_worker_alive(sv->template.limits, (int)i, now_ms);
    }
}

/* Forwards the stop to the workers and waits for them, killing them after the grace time. */
static void stop_workers(struct supervisor *sv, const sigset_t *old_mask)
{
    uint64_t deadline_us = now_us() + ((uint64_t)sv->template.cfg->shutdown_grace_s + 3) * 1000000u;

    for (uint32_t i = 0; i < sv->count; i++) {
        if (sv->pids[i] > 0)
            kill(sv->pids[i], SIGTERM);
    }
    while (reap_workers(sv, 0, old_mask) > 0) {
        if (now_us() >= deadline_us) {
            log_warn("server", "workers still running after the grace period; killing them");
            for (uint32_t i = 0; i < sv->count; i++) {
                if (sv->pids[i] > 0)
                    kill(sv->pids[i], SIGKILL);
            }
            deadline_us = UINT64_MAX;
        }
        usleep(20000);
    }
}

/* Loads the certificate and key once in the parent with OpenSSL, which lws uses too, so
 * that a bad pair stops the server at start with a message instead of failing in every
 * worker. */
static int check_tls(const struct config *cfg)
{
    SSL_CTX *ctx;
    const char *failed = NULL;
    char detail[256] = "";

    if (cfg->tls_cert == NULL)
        return 0;
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        failed = "cannot create a TLS context";
    else if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        failed = "cannot load the certificate chain of --tls-cert";
    else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
        failed = "cannot load the private key of --tls-key";
    else if (SSL_CTX_check_private_key(ctx) != 1)
        failed = "--tls-key does not match --tls-cert";

    if (failed != NULL) {
        ERR_error_string_n(ERR_get_error(), detail, sizeof(detail));
        log_error("server", "%s (%s, %s): %s", failed, cfg->tls_cert, cfg->tls_key, detail);
    }
    SSL_CTX_free(ctx);
    return failed != NULL ? -1 : 0;
}

static int serve(struct config *cfg)
{
    struct supervisor sv;
    struct payload payload;
    int listen_fds[CONFIG_MAX_LISTEN];
    sigset_t block, old_mask;
    struct sigaction sa;
    int listen_count, rc;
    uint64_t start_us = now_us();

    /* Signals are caught from the start, so a stop sent as soon as the listening line
     * appears still ends in an orderly exit. They stay blocked outside ppoll(). */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_parent_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL); /* a closed terminal stops the server like SIGTERM */
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old_mask);

    raise_fd_limit(cfg->max_connections);
    if (check_tls(cfg) != 0)
        return 2;
    rc = payload_create(&payload, cfg->payload_size_bytes, cfg->fragment_size_bytes, LWS_PRE);
    if (rc != 0) {
        log_error("server", "cannot create the %llu-byte payload: %s",
                  (unsigned long long)cfg->payload_size_bytes, strerror(-rc));
        return 1;
    }

    memset(&sv, 0, sizeof(sv));
    sv.template.cfg = cfg;
    sv.template.server_name = cfg->name;
    if (sv.template.server_name == NULL) {
        static char host_name[256];
        if (gethostname(host_name, sizeof(host_name) - 1) != 0)
            snprintf(host_name, sizeof(host_name), "linkspeed");
        sv.template.server_name = host_name;
    }
    sv.template.payload = &payload;
    sv.template.server_start_us = start_us;
    sv.template.limits = limits_create(cfg->max_connections, cfg->max_transfers_per_ip);
    if (sv.template.limits == NULL) {
        log_error("server", "cannot map shared memory for limits: %s", strerror(errno));
        payload_destroy(&payload);
        return 1;
    }

    listen_count = open_listeners(cfg, listen_fds);
    if (listen_count == 0) {
        log_error("server", "no address could be bound; nothing to serve");
        limits_destroy(sv.template.limits);
        payload_destroy(&payload);
        return 1;
    }
    sv.template.listen_fds = listen_fds;
    sv.template.listen_count = listen_count;

    sv.count = cfg->workers;
    for (uint32_t i = 0; i < sv.count; i++) {
        sv.started_us[i] = now_us();
        sv.pids[i] = start_worker(&sv.template, (int)i, &old_mask);
        if (sv.pids[i] < 0) {
            log_error("server", "cannot start worker %u: %s", i, strerror(errno));
            sv.pids[i] = 0;
        }
    }
    log_info("server",
             "linkspeed %s started: %u workers, payload %llu bytes in %u-byte fragments, %s",
             LINKSPEED_VERSION, sv.count, (unsigned long long)cfg->payload_size_bytes,
             cfg->fragment_size_bytes,
             cfg->tls_cert == NULL ? "plain HTTP"
             : cfg->http2          ? "TLS with HTTP/2 and HTTP/1.1"
                                   : "TLS with HTTP/1.1");

    while (!stop_signal) {
        const struct timespec tick = {.tv_sec = 1};
        ppoll(NULL, 0, &tick, &old_mask);
        if (child_exited) {
            child_exited = 0;
            reap_workers(&sv, 1, &old_mask);
        }
        kill_stalled_workers(&sv);
    }

    log_info("server", "stopping on %s: no new connections, %u s for running transfers",
             stop_signal == SIGINT   ? "SIGINT"
             : stop_signal == SIGHUP ? "SIGHUP"
                                     : "SIGTERM",
             cfg->shutdown_grace_s);
    for (int i = 0; i < listen_count; i++)
        close(listen_fds[i]);
    stop_workers(&sv, &old_mask);

    log_info("server", "stopped after %.1f s; %u worker restarts",
             (double)(now_us() - start_us) / 1e6, sv.restarts);
    limits_destroy(sv.template.limits);
    payload_destroy(&payload);
    return 0;
}

int server_main(int argc, char **argv)
{
    static struct config cfg;
    char message[512];

    config_defaults(&cfg);
    switch (config_parse_serve(&cfg, argc, argv, message, sizeof(message))) {
    case CONFIG_HELP:
        config_print_help(stdout);
        return 0;
    case CONFIG_INVALID:
        fprintf(stderr, "linkspeed serve: %s\n", message);
        return 2;
    case CONFIG_OK:
        break;
    }

    log_set_level(cfg.log_level);
    lws_set_log_level(log_lws_mask(), log_lws_emit);
    return serve(&cfg);
}
