/* Limits and counters shared by all worker processes.
 *
 * The parent creates one shared-memory region before it forks the workers. Every count is
 * kept per worker as well as in total, so when a worker dies the parent can give back
 * exactly what that worker held (limits_worker_reset) and the limits stay right. */
#ifndef LINKSPEED_LIMITS_H
#define LINKSPEED_LIMITS_H

#include <stdint.h>

struct limits;

/* Maps a shared region sized for max_connections; returns NULL on failure (errno set). */
struct limits *limits_create(uint32_t max_connections, uint32_t max_per_ip);
void limits_destroy(struct limits *l);

/* Takes one connection slot for `worker`; returns 0, or -1 at max_connections. */
int limits_conn_acquire(struct limits *l, int worker);
void limits_conn_release(struct limits *l, int worker);

/* Takes one measurement slot for the client address (16 bytes, IPv4 as v4-mapped IPv6);
 * returns 0, or -1 when that address already has max_per_ip slots. */
int limits_ip_acquire(struct limits *l, int worker, const uint8_t ip[16]);
void limits_ip_release(struct limits *l, int worker, const uint8_t ip[16]);

/* Counts payloads being sent now; delta is +1 or -1. Needs no lock. */
void limits_transfer_add(struct limits *l, int worker, int delta);

/* Records that `worker` is alive now; the parent kills a worker that stops calling it. */
void limits_worker_alive(struct limits *l, int worker, uint64_t now_ms);
uint64_t limits_worker_last_alive_ms(struct limits *l, int worker);

/* Releases everything a dead worker held. Called by the parent only. */
void limits_worker_reset(struct limits *l, int worker);

uint32_t limits_connections(struct limits *l);
uint32_t limits_transfers(struct limits *l);
uint32_t limits_ip_count(struct limits *l, const uint8_t ip[16]);

#endif
