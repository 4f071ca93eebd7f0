/* Shared-memory limits and counters; see limits.h.
 *
 * Connection and per-IP counts change under one process-shared robust mutex: they change
 * once per connection, not per byte, and a robust mutex survives a worker that dies while
 * holding it. The per-IP table uses open addressing with linear probing and backward-shift
 * deletion, so it never fills with stale entries. */
#include "limits.h"
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct ip_entry {
    uint8_t ip[16];
    uint32_t total; /* 0 marks a free slot */
    uint16_t per_worker[CONFIG_MAX_WORKERS];
};

struct limits {
    size_t mapped_size;
    pthread_mutex_t lock;
    uint32_t max_connections;
    uint32_t max_per_ip;
    uint32_t connections;
    uint32_t worker_connections[CONFIG_MAX_WORKERS];
    _Atomic uint32_t worker_transfers[CONFIG_MAX_WORKERS];
    _Atomic uint64_t worker_alive_ms[CONFIG_MAX_WORKERS];
    uint32_t table_mask;
    struct ip_entry table[];
};

static void lock(struct limits *l)
{
    if (pthread_mutex_lock(&l->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&l->lock);
}

static void unlock(struct limits *l)
{
    pthread_mutex_unlock(&l->lock);
}

struct limits *limits_create(uint32_t max_connections, uint32_t max_per_ip)
{
    pthread_mutexattr_t attr;
    struct limits *l;
    uint32_t slots = 1024;
    size_t size;

    /* At most max_connections addresses hold slots at once; twice that keeps probes short. */
    while (slots < 2 * (uint64_t)max_connections)
        slots *= 2;
    size = sizeof(*l) + slots * sizeof(struct ip_entry);

    l = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l == MAP_FAILED)
        return NULL;
    l->mapped_size = size;
    l->max_connections = max_connections;
    l->max_per_ip = max_per_ip;
    l->table_mask = slots - 1;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (pthread_mutex_init(&l->lock, &attr) != 0) {
        pthread_mutexattr_destroy(&attr);
        munmap(l, size);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutexattr_destroy(&attr);
    return l;
}

void limits_destroy(struct limits *l)
{
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->lock);
    munmap(l, l->mapped_size);
}

int limits_conn_acquire(struct limits *l, int worker)
{
    int rc = -1;

    lock(l);
    if (l->connections < l->max_connections) {
        l->connections++;
        l->worker_connections[worker]++;
        rc = 0;
    }
    unlock(l);
    return rc;
}

void limits_conn_release(struct limits *l, int worker)
{
    lock(l);
    if (l->worker_connections[worker] > 0) {
        l->worker_connections[worker]--;
        l->connections--;
    }
    unlock(l);
}

static uint32_t hash_ip(const uint8_t ip[16])
{
    uint32_t h = 2166136261u;

    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 16777619u;
    return h;
}

/* Returns the slot holding ip, or the free slot where it would go. Caller holds the lock. */
static uint32_t find_slot(struct limits *l, const uint8_t ip[16])
{
    uint32_t i = hash_ip(ip) & l->table_mask;

    while (l->table[i].total != 0 && memcmp(l->table[i].ip, ip, 16) != 0)
        i = (i + 1) & l->table_mask;
    return i;
}

/* Frees slot i and moves later entries of the probe chain back into the gap. */
static void delete_slot(struct limits *l, uint32_t i)
{
    uint32_t j = i;

    for (;;) {
        j = (j + 1) & l->table_mask;
        if (l->table[j].total == 0)
            break;
        uint32_t home = hash_ip(l->table[j].ip) & l->table_mask;
        /* Entry j may move to i only if its home slot is not in the cyclic range (i, j]. */
        int home_in_range = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!home_in_range) {
            l->table[i] = l->table[j];
            i = j;
        }
    }
    memset(&l->table[i], 0, sizeof(l->table[i]));
}

int limits_ip_acquire(struct limits *l, int worker, const uint8_t ip[16])
{
    int rc = -1;

    lock(l);
    uint32_t i = find_slot(l, ip);
    struct ip_entry *e = &l->table[i];
    if (e->total < l->max_per_ip) {
        if (e->total == 0)
            memcpy(e->ip, ip, 16);
        e->total++;
        e->per_worker[worker]++;
        rc = 0;
    }
    unlock(l);
    return rc;
}

void limits_ip_release(struct limits *l, int worker, const uint8_t ip[16])
{
    lock(l);
    uint32_t i = find_slot(l, ip);
    struct ip_entry *e = &l->table[i];
    if (e->total != 0 && e->per_worker[worker] > 0) {
        e->per_worker[worker]--;
        e->total--;
        if (e->total == 0)
            delete_slot(l, i);
    }
    unlock(l);
}

void limits_transfer_add(struct limits *l, int worker, int delta)
{
    if (delta > 0)
        atomic_fetch_add(&l->worker_transfers[worker], 1);
    else
        atomic_fetch_sub(&l->worker_transfers[worker], 1);
}

void limits_worker_alive(struct limits *l, int worker, uint64_t now_ms)
{
    atomic_store(&l->worker_alive_ms[worker], now_ms);
}

uint64_t limits_worker_last_alive_ms(struct limits *l, int worker)
{
    return atomic_load(&l->worker_alive_ms[worker]);
}

void limits_worker_reset(struct limits *l, int worker)
{
    uint32_t slots = l->table_mask + 1;
    struct ip_entry *live;
    uint32_t live_count = 0;

    lock(l);
    l->connections -= l->worker_connections[worker];
    l->worker_connections[worker] = 0;
    atomic_store(&l->worker_transfers[worker], 0);

    /* Entries whose count falls to zero would break probe chains if left in place, so the
     * surviving entries are collected and inserted again into a cleared table. */
    live = malloc(slots * sizeof(*live));
    if (live == NULL) {
        /* Without memory the worker's share stays counted: slots leak, limits stay safe. */
        unlock(l);
        return;
    }
    for (uint32_t i = 0; i < slots; i++) {
        struct ip_entry *e = &l->table[i];
        if (e->total == 0)
            continue;
        e->total -= e->per_worker[worker];
        e->per_worker[worker] = 0;
        if (e->total > 0)
            live[live_count++] = *e;
    }
    memset(l->table, 0, slots * sizeof(*live));
    for (uint32_t i = 0; i < live_count; i++)
        l->table[find_slot(l, live[i].ip)] = live[i];
    unlock(l);
    free(live);
}

uint32_t limits_connections(struct limits *l)
{
    uint32_t n;

    lock(l);
    n = l->connections;
    unlock(l);
    return n;
}

uint32_t limits_transfers(struct limits *l)
{
    uint32_t n = 0;

    for (int i = 0; i < CONFIG_MAX_WORKERS; i++)
        n += atomic_load(&l->worker_transfers[i]);
    return n;
}

uint32_t limits_ip_count(struct limits *l, const uint8_t ip[16])
{
    uint32_t n;

    lock(l);
    n = l->table[find_slot(l, ip)].total;
    unlock(l);
    return n;
}
