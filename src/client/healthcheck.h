/* `linkspeed healthcheck [URL]`: a liveness probe for containers and service managers. */
#ifndef LINKSPEED_HEALTHCHECK_H
#define LINKSPEED_HEALTHCHECK_H

/* Returns 0 when URL/healthz returns 200 with {"status":"ok"}, 1 when not, 2 on bad usage. */
int healthcheck_main(int argc, char **argv);

#endif
