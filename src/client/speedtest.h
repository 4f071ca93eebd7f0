/* `linkspeed test [URL]`: the command-line speed test client. */
#ifndef LINKSPEED_SPEEDTEST_H
#define LINKSPEED_SPEEDTEST_H

/* Runs the command; argv[0] is the command name ("test") and the flags and URL follow.
 * Returns the exit code: 0 for a complete test, 1 when a test ran but failed or was
 * cancelled (what completed is still output), 2 for a usage error. */
int speedtest_main(int argc, char **argv);

#endif
